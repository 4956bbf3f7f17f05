"""URL images: downloaded only when allowed, within a byte cap and a deadline (a server on 127.0.0.1
that the test starts; no other network)."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from pipelines.base import DOWNLOAD_BYTES_PER_PIXEL, DownloadError, ImageReader, download_limit, fetch_url

QUESTION = "what color is the dog on the left?"


class Handler(http.server.BaseHTTPRequestHandler):
    """GET /<route>: what the test's routes say, 404 for others. Writes to a client that went away are ignored."""

    routes: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path not in self.routes:
            self.send_error(404)
            return
        try:
            self.routes[self.path](self)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """(base URL, routes): a threaded HTTP server on 127.0.0.1; routes map a path to a handler function."""
    routes: dict = {}
    handler = type("RoutedHandler", (Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def send(body: bytes, *, length: int | None = None):
    def respond(request):
        request.send_response(200)
        request.send_header("Content-Type", "image/jpeg")
        request.send_header("Content-Length", str(len(body) if length is None else length))
        request.end_headers()
        request.wfile.write(body)

    return respond


def stream(request):
    """A body without Content-Length: 8 MB, far over the test's cap (bounded, so that a reader without a
    cap ends too)."""
    request.send_response(200)
    request.end_headers()
    block = b"\0" * 65536
    for _ in range(128):
        request.wfile.write(block)


def trickle(request):
    """Headers at once, then one byte every 50 ms for 3 s: each read succeeds well within any per-read
    timeout, and only a deadline on the whole download stops it sooner."""
    request.send_response(200)
    request.end_headers()
    for _ in range(60):
        request.wfile.write(b"x")
        request.wfile.flush()
        time.sleep(0.05)


def test_url_is_fetched_when_allowed(vqa, images, server):
    base, routes = server
    routes["/dog.jpg"] = send(images[0].read_bytes())
    answers = vqa(image=f"{base}/dog.jpg", question=QUESTION, allow_network=True)
    expected = vqa(image=str(images[0]), question=QUESTION)
    assert [a["answer"] for a in answers] == [a["answer"] for a in expected]


def test_a_declared_length_over_the_cap_is_refused_before_the_body(server):
    base, routes = server
    routes["/huge.jpg"] = send(b"", length=1_500_000_000)  # declares 1.5 GB, sends nothing
    with pytest.raises(DownloadError) as error:
        fetch_url(f"{base}/huge.jpg", allow_network=True, max_bytes=100_000, timeout=5)
    message = str(error.value)
    assert f"{base}/huge.jpg" in message and "100,000 bytes" in message and "1,500,000,000" in message


def test_a_body_without_length_stops_at_the_cap(server):
    base, routes = server
    routes["/endless.jpg"] = stream
    with pytest.raises(DownloadError, match=r"endless\.jpg.*larger than the download limit of 200,000 bytes"):
        fetch_url(f"{base}/endless.jpg", allow_network=True, max_bytes=200_000, timeout=5)


def test_the_deadline_holds_against_a_trickling_server(server):
    base, routes = server
    routes["/slow.jpg"] = trickle
    with pytest.raises(DownloadError, match=r"slow\.jpg.*not complete after 0\.5 s"):
        fetch_url(f"{base}/slow.jpg", allow_network=True, max_bytes=None, timeout=0.5)


def test_http_errors_name_the_url(server):
    base, routes = server
    with pytest.raises(DownloadError, match=r"could not download image .*/missing\.jpg.*404"):
        fetch_url(f"{base}/missing.jpg", allow_network=True)
    routes["/cut.jpg"] = send(b"abc", length=10)  # the connection closes 7 bytes early
    with pytest.raises(DownloadError, match=r"image .*/cut\.jpg.*: the connection closed after 3 of its 10 bytes"):
        fetch_url(f"{base}/cut.jpg", allow_network=True, timeout=5)


def test_the_pipelines_limits_reach_the_download(vqa, server):
    base, routes = server
    routes["/big.jpg"] = send(b"\xff" * 5000)
    reader = ImageReader(vqa.reader.extractor, allow_network=True, max_download_bytes=1000, download_timeout=5)
    with pytest.raises(DownloadError, match="download limit of 1,000 bytes"):
        reader.fetch(f"{base}/big.jpg")
    assert ImageReader(vqa.reader.extractor, allow_network=True).fetch(f"{base}/big.jpg") == b"\xff" * 5000


def test_the_default_cap_follows_the_pixel_limit():
    assert download_limit(None) is None
    assert download_limit(1000) == DOWNLOAD_BYTES_PER_PIXEL * 1000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_download_bytes": 0}, "max_download_bytes=0: expected an integer >= 1"),
        ({"max_download_bytes": 1.5}, "max_download_bytes=1.5: expected an integer >= 1"),
        ({"download_timeout": 0}, "download_timeout=0: expected a number of seconds > 0"),
        ({"download_timeout": float("inf")}, "download_timeout=inf: expected a number of seconds > 0"),
    ],
)
def test_bad_download_limits(vqa, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImageReader(vqa.reader.extractor, **kwargs)
