"""`lxmert ask`: cheap checks before the models load, one message when the hub is unreachable, a fast
--help, a clean Ctrl-C, flags (not Python arguments) in its messages.

The hub tests run the command in a subprocess with HF_ENDPOINT on a closed 127.0.0.1 port and a
temporary HF_HOME: what it prints there is all a user would see.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "what color is the dog on the left?"
HUB_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT")


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in HUB_VARIABLES}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**environment, **env}, capture_output=True, text=True, timeout=300
    )


def closed_port() -> int:
    """A 127.0.0.1 port that nothing listens on (it was bound a moment ago and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_hub(tmp_path: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp_path / "hf-home")}


def cache_as_hub_repo(folder: Path, repo_id: str, hf_home: Path) -> None:
    """Put `folder`'s files into huggingface_hub's cache layout, as a download of `repo_id` would."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


# -- start-up ----------------------------------------------------------------------------------------


def test_help_imports_neither_torch_nor_the_packages():
    script = (
        "import sys\n"
        "from pipelines.cli import main\n"
        "try:\n"
        "    main(['ask', '--help'])\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'huggingface_hub', 'lxmert', 'extract') if m in sys.modules))\n"
    )
    result = run(["-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["exit 0", "[]"]
    module = run(["-m", "pipelines.cli", "ask", "--help"])
    assert module.returncode == 0 and 'lxmert ask cat.jpg "What color is the cat?"' in module.stdout


def test_ctrl_c_prints_one_line_and_exits_130(vqa_dir, detector_dir, images, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipelines.registry.pipeline", interrupted)
    args = ["ask", str(images[0]), QUESTION, "--model", str(vqa_dir), "--detector", str(detector_dir)]
    assert cli_main(args) == 130
    assert capsys.readouterr().err == "lxmert ask: interrupted\n"
    monkeypatch.setattr("pipelines.cli.check_image", interrupted)
    assert cli_main(args) == 130
    assert capsys.readouterr().err == "lxmert ask: interrupted\n"


# -- the image is checked first ----------------------------------------------------------------------


@pytest.fixture
def no_models(monkeypatch):
    """Fails a test that gets as far as looking for or loading a checkpoint."""

    def load(*args, **kwargs):
        pytest.fail("a checkpoint was looked for before the image was checked")

    monkeypatch.setattr("pipelines.registry.hub_checkpoints", load)
    monkeypatch.setattr("pipelines.registry.pipeline", load)


def test_a_missing_image_fails_before_any_model_loads(tmp_path, capsys, no_models):
    assert cli_main(["ask", str(tmp_path / "typo.jpg"), QUESTION]) == 2
    assert capsys.readouterr().err == f"lxmert ask: error: image '{tmp_path / 'typo.jpg'}' does not exist\n"
    assert cli_main(["ask", str(tmp_path), QUESTION]) == 2
    assert capsys.readouterr().err == f"lxmert ask: error: image '{tmp_path}' is not a file\n"


def test_a_url_needs_the_flag(capsys, no_models):
    assert cli_main(["ask", "https://example.com/cat.jpg", QUESTION]) == 2
    error = capsys.readouterr().err
    assert "--allow-network" in error and "allow_network" not in error


def test_top_k_is_checked_by_the_parser(images, capsys, no_models):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["ask", str(images[0]), QUESTION, "--top-k", "0"])
    assert exit_info.value.code == 2
    assert "argument --top-k: expected a whole number >= 1, got 0" in capsys.readouterr().err


def test_warnings_are_one_line_each(vqa_dir, detector_dir, images, capsys):
    words = ["is", *["dog"] * 80, "red"]  # each one wordpiece: over the tiny model's 64 tokens
    question = " ".join(words)
    args = ["ask", str(images[0]), question, "--model", str(vqa_dir), "--detector", str(detector_dir)]
    assert cli_main([*args, "--device", "cpu"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"lxmert ask: warning: question {question[:40]!r}... has {len(words) + 2} tokens; it was cut to 64"
    ]


# -- an unreachable hub ------------------------------------------------------------------------------


def test_unreachable_hub_names_every_missing_checkpoint_at_once(tmp_path, images):
    result = run(["-m", "pipelines.cli", "ask", str(images[0]), QUESTION], **unreachable_hub(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lxmert ask: error: the Hugging Face hub (http://127.0.0.1:")
    message = lines[0]
    assert "the LXMERT model unc-nlp/lxmert-vqa-uncased (--model)" in message
    assert "the detector unc-nlp/frcnn-vg-finetuned (--detector)" in message
    assert "huggingface-cli download unc-nlp/lxmert-vqa-uncased" in message and "<id>" not in message
    assert "--model DIR (config.json" in message and "--detector DIR (config.yaml" in message
    assert result.stdout == ""


def test_unreachable_hub_names_only_what_is_missing(vqa_dir, images, monkeypatch, capsys):
    monkeypatch.setattr("lxmert.hub.hub_reachable", lambda: False)
    args = ["ask", str(images[0]), QUESTION, "--model", str(vqa_dir), "--detector", "nobody/uncached-detector"]
    assert cli_main(args) == 2
    error = capsys.readouterr().err
    assert "lacks the detector nobody/uncached-detector (--detector); download it once" in error
    assert "--model" not in error


def test_unreachable_hub_uses_the_cache_without_retries(vqa_dir, detector_dir, tmp_path, images):
    env = unreachable_hub(tmp_path)
    cache_as_hub_repo(vqa_dir, "someone/tiny-vqa", Path(env["HF_HOME"]))
    cache_as_hub_repo(detector_dir, "someone/tiny-detector", Path(env["HF_HOME"]))
    args = ["ask", str(images[0]), QUESTION, "--model", "someone/tiny-vqa", "--detector", "someone/tiny-detector"]
    result = run(["-m", "pipelines.cli", *args, "--device", "cpu", "--top-k", "2"], **env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no retry lines from the hub client
    assert len(result.stdout.splitlines()) == 2
