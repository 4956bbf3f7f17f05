"""`lxmert ask`: cheap checks before the models load, one message when the hub is unreachable, a fast
--help, a clean Ctrl-C, flags (not Python arguments) in its messages. `lxmert regions`: the detector's regions
as a list, JSON or a picture, its output checked before the detector loads.

The hub tests run the command in a subprocess with HF_ENDPOINT on a closed 127.0.0.1 port and a
temporary HF_HOME: what it prints there is all a user would see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_help
from PIL import Image

from pipelines.cli import CAPTIONS, DRAWN_BOXES
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


@pytest.mark.parametrize("command", ["ask", "regions"])
def test_help_imports_neither_torch_nor_the_packages(command):
    code, _, loaded = run_help("pipelines.cli", [command, "--help"])
    heavy = {"torch", "numpy", "PIL", "huggingface_hub", "lxmert"}
    # extract.options (argument parsers, no torch) is the one module of the packages a --help may load.
    others = {m for m in loaded if m.startswith("extract.") and m != "extract.options"}
    assert code == 0 and not (heavy & loaded) and not others
    module = run(["-m", "pipelines.cli", command, "--help"])
    example = {"ask": 'lxmert ask cat.jpg "What color is the cat?"', "regions": "lxmert regions cat.jpg --draw"}
    assert module.returncode == 0 and example[command] in module.stdout


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
    assert "argument --top-k: expected an integer >= 1, got 0" in capsys.readouterr().err


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


def test_pipeline_with_the_hub_unreachable_names_every_missing_checkpoint(detector_dir, monkeypatch):
    from pipelines import HubUnreachableError, pipeline

    monkeypatch.setattr("lxmert.hub.hub_reachable", lambda: False)
    with pytest.raises(HubUnreachableError) as raised:
        pipeline("vqa", model="nobody/uncached-vqa", detector=detector_dir, device="cpu")
    message = str(raised.value)
    assert "the Hugging Face hub (" in message and "is unreachable" in message
    assert "lacks the LXMERT model nobody/uncached-vqa (model=); download it once" in message
    assert "huggingface-cli download nobody/uncached-vqa" in message and "detector" not in message
    assert [(c.argument, c.repo_id) for c in raised.value.missing] == [("model", "nobody/uncached-vqa")]


def test_pipeline_with_the_hub_unreachable_uses_the_cache_without_retries(vqa_dir, detector_dir, images, tmp_path):
    # pipeline() from code, not the command: one probe, then the cache (the hub client's retries wait minutes).
    env = unreachable_hub(tmp_path)
    cache_as_hub_repo(vqa_dir, "someone/tiny-vqa", Path(env["HF_HOME"]))
    cache_as_hub_repo(detector_dir, "someone/tiny-detector", Path(env["HF_HOME"]))
    script = (
        "from pipelines import pipeline\n"
        "vqa = pipeline('vqa', model='someone/tiny-vqa', detector='someone/tiny-detector', device='cpu')\n"
        f"print(len(vqa({str(images[0])!r}, {QUESTION!r}, top_k=2)))\n"
    )
    result = run(["-c", script], **env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == "2\n"


# -- lxmert regions ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def found(detector_dir, images):
    """What the detector finds in the first image, through the pipeline `lxmert regions` runs."""
    from pipelines import pipeline

    return pipeline("feature-extraction", detector=detector_dir, device="cpu")(images[0])


def regions_command(image, detector_dir, *options) -> list[str]:
    return ["regions", str(image), "--detector", str(detector_dir), "--device", "cpu", *map(str, options)]


def test_the_written_constants_are_extracts():
    from extract.draw import CAPTIONS as DRAW_CAPTIONS
    from extract.extractor import SHOWN_BOXES

    assert CAPTIONS == DRAW_CAPTIONS and DRAWN_BOXES == SHOWN_BOXES


def test_regions_draws_the_image_with_its_boxes(detector_dir, images, found, tmp_path, capsys):
    from extract.draw import box_color, kept_boxes, pixel_span

    output = tmp_path / "regions.png"
    assert cli_main(regions_command(images[0], detector_dir, "--draw", output, "--top", 3, "--captions", "none")) == 0
    height, width = found.image_size
    assert capsys.readouterr().out == f"{output}: 3 of {len(found)} regions drawn on the {width}x{height} image\n"
    with Image.open(output) as written:
        assert written.format == "PNG" and written.size == (width, height)
        picture = np.asarray(written.convert("RGB"))
    assert (picture == np.asarray(found.draw(top=3, captions="none"))).all()
    drawn = kept_boxes(len(found), found.object_scores.numpy(), 3, None)
    last = drawn[-1]  # outlined last: every pixel of its edges keeps its colour
    left, top, right, bottom = pixel_span(found.boxes[last].numpy(), height, width)
    color = box_color(last)
    for edge in (picture[top, left : right + 1], picture[bottom, left : right + 1], picture[top : bottom + 1, left]):
        assert (edge == color).all()

    # the default: the 20 best regions with attribute captions; a .jpg is a JPEG
    assert cli_main(regions_command(images[0], detector_dir, "--draw", tmp_path / "regions.jpg")) == 0
    assert f"{DRAWN_BOXES} of {len(found)} regions drawn" in capsys.readouterr().out
    with Image.open(tmp_path / "regions.jpg") as written:
        assert written.format == "JPEG" and written.size == (width, height)


def test_regions_prints_one_line_per_region_and_json(detector_dir, images, found, capsys):
    from extract.draw import kept_boxes

    assert cli_main(regions_command(images[0], detector_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(found)  # without --draw: every region
    first = found.boxes[0].tolist()
    caption = f"{found.attribute_names[0]} {found.object_names[0]} {found.object_scores[0].item():.2f}"
    assert lines[0] == f" 0  [{', '.join(f'{v:.1f}' for v in first)}]  {caption}"
    assert all(re.fullmatch(r" ?\d+  \[[-\d.]+(, [-\d.]+){3}\]  \S+ \S+ \d\.\d\d", line) for line in lines)

    assert cli_main(regions_command(images[0], detector_dir, "--json", "--top", 4, "--min-score", 0.1)) == 0
    printed = json.loads(capsys.readouterr().out)
    height, width = found.image_size
    assert (printed["image"], printed["height"], printed["width"]) == (str(images[0]), height, width)
    scores = found.object_scores.numpy()
    assert [r["index"] for r in printed["regions"]] == kept_boxes(len(found), scores, 4, 0.1)
    region = printed["regions"][0]
    i = region["index"]
    assert region == {
        "index": i,
        "box": found.boxes[i].tolist(),
        "object": found.object_names[i],
        "object_score": found.object_scores[i].item(),
        "attribute": found.attribute_names[i],
        "attribute_score": found.attribute_scores[i].item(),
    }


def test_regions_output_problems_fail_before_the_detector_loads(images, tmp_path, capsys, no_models):
    def error(*options) -> str:
        assert cli_main(["regions", str(images[0]), *map(str, options)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("lxmert regions: error: ")
        return err.removeprefix("lxmert regions: error: ").strip()

    missing = tmp_path / "no-such-folder" / "r.png"
    assert error("--draw", missing) == f"--draw '{missing}': the folder '{missing.parent}' does not exist"
    assert error("--draw", tmp_path) == (
        f"--draw '{tmp_path}' is a folder; give a file name, e.g. {tmp_path / 'regions.png'}"
    )
    unknown = tmp_path / "r.xyz"
    assert error("--draw", unknown).startswith(
        f"--draw '{unknown}': Pillow writes no picture format with the extension '.xyz'; end the name in .png or .jpg"
    )
    assert "no extension; end the name in .png or .jpg" in error("--draw", tmp_path / "r")
    assert error("--num-boxes", "0") == "--num-boxes 0: expected a count like 36 or a range like 10-100"
    # the image is checked first
    assert cli_main(["regions", str(tmp_path / "typo.jpg"), "--draw", str(missing)]) == 2
    assert capsys.readouterr().err == f"lxmert regions: error: image '{tmp_path / 'typo.jpg'}' does not exist\n"


def test_regions_refuses_a_read_only_folder(images, tmp_path, monkeypatch, capsys, no_models):
    folder = tmp_path / "read-only"
    folder.mkdir()
    access = os.access
    # What os.access says of a folder mode 0o500 to anyone but root (the tests may run as root).
    monkeypatch.setattr(os, "access", lambda path, mode: access(path, mode) and os.fspath(path) != str(folder))
    assert cli_main(["regions", str(images[0]), "--draw", str(folder / "r.png")]) == 2
    assert (
        capsys.readouterr().err
        == f"lxmert regions: error: --draw '{folder / 'r.png'}': permission denied (cannot write there)\n"
    )


def test_regions_unreadable_image_and_failed_write_are_one_line(detector_dir, images, tmp_path, monkeypatch, capsys):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    assert cli_main(regions_command(not_an_image, detector_dir)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"lxmert regions: error: cannot load image '{not_an_image}'") and "Pillow" in err

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    assert cli_main(regions_command(images[0], detector_dir, "--draw", tmp_path / "r.png")) == 2
    assert capsys.readouterr().err == "lxmert regions: error: [Errno 28] No space left on device\n"
