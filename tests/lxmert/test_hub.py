"""lxmert.hub's look-ups that need no download: is a hub id in the local cache, does the hub answer
(servers on 127.0.0.1 only)."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from lxmert import LxmertConfig, LxmertModel
from lxmert.hub import hub_reachable, in_hub_cache


def cache_repo(cache_dir, repo_id: str, files: dict[str, bytes]) -> None:
    """Files of `repo_id` in huggingface_hub's cache layout, as a download would leave them."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    commit = "1" * 40
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_in_hub_cache_looks_only_at_the_cache(tmp_path, tools, monkeypatch):
    folder = tmp_path / "saved"
    LxmertModel(LxmertConfig(**tools.TINY)).save_pretrained(folder)
    cache = tmp_path / "cache"
    cache_repo(cache, "someone/config-only", {"config.json": (folder / "config.json").read_bytes()})
    complete = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    cache_repo(cache, "someone/complete", complete)

    def no_network(*args):
        raise AssertionError("in_hub_cache opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert in_hub_cache("someone/complete", cache_dir=cache) is True
    assert in_hub_cache("someone/config-only", cache_dir=cache) is False
    assert in_hub_cache("someone/never-downloaded", cache_dir=cache) is False
    assert in_hub_cache(folder) is None  # a local folder: nothing to download
    assert in_hub_cache("./not/there") is None  # not a hub id: loading names the bad path


@pytest.fixture
def closed_port() -> int:
    """A 127.0.0.1 port that nothing listens on (bound a moment ago and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NotFound(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):  # noqa: N802 (http.server's name)
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_hub_reachable(monkeypatch, closed_port):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}")
        assert hub_reachable(timeout=5) is True  # any HTTP answer counts, 404 included
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
        assert hub_reachable(timeout=5) is False  # without asking
    finally:
        httpd.shutdown()
        httpd.server_close()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{closed_port}")
    assert hub_reachable(timeout=5) is False
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "not a url")
    assert hub_reachable(timeout=5) is False
