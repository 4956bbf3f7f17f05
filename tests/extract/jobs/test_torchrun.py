"""The job under torchrun: two CPU processes (gloo) each write their shard, rank 0 merges, and the merged store
equals a single-process run; a rank re-run alone with --resume fits back in.

The detector is the tiny fixture in the cheaper setting of test_jobs.py. The ranks run with one thread each
(torchrun's default), the reference with torch's default: features agree within float tolerance only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES

from extract.jobs.distributed import shard_path
from extract.jobs.inputs import InputError
from extract.jobs.run import run_extraction
from extract.store import FeatureStore, merge
from extract.store.store import BOX_COLUMNS

NAMES = ("000456", "000542", "001150", "input")
TOLERANCE = dict(rtol=1e-4, atol=1e-5)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="torchrun's c10d rendezvous on a POSIX host")


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for name in NAMES:
        shutil.copy(FIXTURES / "images" / f"{name}.jpg", root / f"{name}.jpg")
    (root / "truncated.jpg").write_bytes((FIXTURES / "images" / "input.jpg").read_bytes()[:2000])
    return root


def assert_same_store(path: Path, reference: Path) -> None:
    with FeatureStore(path) as store, FeatureStore(reference) as expected:
        assert sorted(store.ids()) == sorted(expected.ids())
        assert store.errors().keys() == expected.errors().keys()
        assert store.metadata == expected.metadata
        for image_id in expected.ids():
            ours, theirs = store[image_id], expected[image_id]
            assert (ours.height, ours.width) == (theirs.height, theirs.width)
            for name in BOX_COLUMNS:
                np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), **TOLERANCE, err_msg=name)


def test_two_ranks_write_shards_rank_0_merges_and_a_rank_resumes_alone(folder, tmp_path, detector_dir):
    output = tmp_path / "coco.h5"
    job = [str(folder), "--output", str(output), "--detector", str(detector_dir), "--device", "cpu"]
    job += ["--num-workers", "1", "--batch-size", "2", "--allow-errors"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ran = subprocess.run([*launcher, "-m", "extract.jobs", *job], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"4 done, 0 skipped (already in the store), 1 failed -> {output}" in ran.stdout
    assert "merged 2 shards" in ran.stdout and ran.stdout.count("done,") == 1  # rank 0 speaks for the job

    shards = [tmp_path / "coco.shard-00000-of-00002.h5", tmp_path / "coco.shard-00001-of-00002.h5"]
    assert shards == [shard_path(output, rank, 2) for rank in range(2)] and all(s.exists() for s in shards)
    sizes = [len(FeatureStore(shard)) + len(FeatureStore(shard).errors()) for shard in shards]
    assert sum(sizes) == 5 and min(sizes) > 0  # both ranks had work

    reference = tmp_path / "single.h5"
    run_extraction(folder, reference, detector=detector_dir, device="cpu", num_workers=0, progress=False)
    assert_same_store(output, reference)

    # A rank that died: its shard is re-run alone with --resume (here: from scratch), then merged again.
    shards[1].unlink()
    summary = run_extraction(
        folder, output, detector=detector_dir, device="cpu", shard="1/2", resume=True, num_workers=0, progress=False
    )
    assert summary.output == shards[1] and summary.done + summary.failed == sizes[1]
    merge(shards, output, overwrite=True)
    assert_same_store(output, reference)


def test_under_torchrun_an_existing_output_is_refused_before_any_work(tmp_path, monkeypatch, detector_dir):
    (tmp_path / "coco.h5").write_bytes(b"")
    launch = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for name, value in launch.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(FileExistsError, match="coco.h5 already exists; pass --resume"):
        run_extraction(FIXTURES / "images", tmp_path / "coco.h5", detector=detector_dir)
    with pytest.raises(InputError, match="drop shard"):
        run_extraction(FIXTURES / "images", tmp_path / "coco.h5", detector=detector_dir, shard="0/2")
