"""`lxmert serve`: a fast --help, the `lxmert` entry point running pipelines' commands too, settings refused
before the models load, and a live server on 127.0.0.1 that answers, then drains on SIGTERM: the request in
flight finishes, new ones get 503, the process exits 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from helpers import free_port, http_status, run_help, wait_until

from pipelines.cli import build_parser
from service.cli import add_serve_parser, config_from_args, main

ROOT = Path(__file__).resolve().parents[2]
# extract.options (argument parsers, no torch) is the one module of the packages a --help may load.
HEAVY = (
    "torch",
    "numpy",
    "PIL",
    "huggingface_hub",
    "lxmert",
    "extract.images",
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", ["serve", "ask", "regions"])
def test_help_imports_neither_torch_nor_the_web_framework(command):
    code, _, loaded = run_help("service.cli", [command, "--help"])
    assert code == 0 and not set(HEAVY) & loaded


def test_serve_help_and_the_command_list():
    serve = run(["-m", "service.cli", "serve", "--help"])
    assert serve.returncode == 0, serve.stderr
    assert "curl -F image=@cat.jpg" in serve.stdout and "--max-wait-ms" in serve.stdout
    listing = run(["-m", "service.cli", "--help"])
    assert all(command in listing.stdout for command in ("ask", "regions", "train", "evaluate", "serve"))


def test_the_lxmert_entry_point_runs_ask(vqa_dir, detector_dir, capsys):
    image = str(ROOT / "tests" / "fixtures" / "images" / "000456.jpg")
    args = ["ask", image, "what is it?", "--model", str(vqa_dir), "--detector", str(detector_dir), "--device", "cpu"]
    assert main([*args, "--json", "--top-k", "2"]) == 0
    assert [set(answer) for answer in json.loads(capsys.readouterr().out)] == [{"score", "answer"}] * 2


@pytest.fixture
def no_models(monkeypatch):
    def load(*args, **kwargs):
        pytest.fail("the models were loaded before the settings were checked")

    monkeypatch.setattr("service.models.load_models", load)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-batch-size", "0"], "--max-batch-size 0: expected a whole number >= 1"),
        (["--request-timeout", "0"], "--request-timeout 0.0: expected a number > 0"),
        (["--num-boxes", "ten"], '--num-boxes \'ten\': expected a count like "36" or a range like "10-100"'),
        (["--store", "missing.h5"], "--store 'missing.h5' does not exist"),
    ],
)
def test_bad_settings_fail_before_the_models_load(flags, message, capsys, no_models):
    assert main(["serve", *flags]) == 2
    assert capsys.readouterr().err == f"lxmert serve: error: {message}\n"


def test_a_taken_port_fails_before_the_models_load(capsys, no_models):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"lxmert serve: error: cannot listen on 127.0.0.1:{port}: ") and "--port" in error


def test_the_api_key_comes_from_the_flag_or_the_environment(monkeypatch):
    parser = build_parser((add_serve_parser,))
    monkeypatch.delenv("LXMERT_API_KEY", raising=False)
    assert config_from_args(parser.parse_args(["serve"])).api_key is None
    monkeypatch.setenv("LXMERT_API_KEY", "from-env")
    assert config_from_args(parser.parse_args(["serve"])).api_key == "from-env"
    assert config_from_args(parser.parse_args(["serve", "--api-key", "flag"])).api_key == "flag"
    config = config_from_args(parser.parse_args(["serve", "--max-upload-mb", "1.5", "--port", "9000"]))
    assert (config.max_upload_bytes, config.port, config.host) == (1_572_864, 9000, "127.0.0.1")


def test_the_written_constants_are_the_packages():
    # service.config writes them out: `lxmert serve --help` must not import extract or pipelines
    from extract.options import DEFAULT_DETECTOR, parse_box_range
    from pipelines.registry import TASKS
    from service import config

    assert config.DEFAULT_DETECTOR == DEFAULT_DETECTOR
    assert config.DEFAULT_VQA_MODEL == TASKS["vqa"].default_model
    for text in ("36", "10-100", "1", "0", "5-4", "ten", "-3", "3-", " 36", "1-2-3"):
        try:
            parse_box_range(text)
            valid = True
        except ValueError:
            valid = False
        try:
            config.ServeConfig(num_boxes=text).check()
            assert valid, text
        except ValueError:
            assert not valid, text


# -- a live server ---------------------------------------------------------------------------------

WAIT_MS = 4000  # the in-flight request's detector pass waits this long for company: the window of the test


def test_a_live_server_answers_then_drains_on_sigterm(vqa_dir, detector_dir, tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    # One image per request and 4 questions: the LXMERT pass is full at once (4 pairs), the detector pass (1 of
    # 4 images) waits WAIT_MS for company, which keeps the request in flight while the test sends SIGTERM.
    command = ["-m", "service.cli", "serve", "--model", str(vqa_dir), "--detector", str(detector_dir)]
    command += ["--device", "cpu", "--port", str(port), "--max-batch-size", "4", "--max-wait-ms", str(WAIT_MS)]
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, *command], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http_status(f"{base}/readyz") == 200, server, log, timeout=180)
        image = (ROOT / "tests" / "fixtures" / "images" / "000456.jpg").read_bytes()
        questions = ["what is it?", "is it red?", "how many?", "where?"]
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                httpx.post,
                f"{base}/v1/vqa",
                files={"image": ("a.jpg", image)},
                data={"question": questions},
                timeout=120,
            )
            wait_until(
                lambda: 'lxmert_queue_depth{stage="detector"} 1.0' in httpx.get(f"{base}/metrics").text, server, log, 60
            )
            server.send_signal(signal.SIGTERM)
            wait_until(lambda: http_status(f"{base}/readyz") == 503, server, log, timeout=30)
            refused = httpx.post(f"{base}/v1/vqa", json={"image_id": "x", "question": "what?"}, timeout=30)
            assert not in_flight.done(), "the request in flight finished before the test could check the drain"
            answered = in_flight.result()
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]["message"]
        assert answered.status_code == 200, answered.text
        assert [result["question"] for result in answered.json()["results"]] == questions
        assert server.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert "SIGTERM: draining (1 requests in flight" in log.read_text()
