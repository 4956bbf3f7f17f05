"""The service tests' servers: apps built by create_app on the tiny checkpoints of tests/conftest.py (loaded once
per session by service.models.load_models, as `lxmert serve` loads them), driven through FastAPI's TestClient
with the lifespan run (the device worker started and stopped)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from helpers import IMAGES

with warnings.catch_warnings():
    # Starlette 1 suggests httpx2 for its TestClient, once, when it is imported; httpx (the test extra) works.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

# Three photos: 000456 and 000542 (500x375) and the portrait COCO_..._131486 (407x640).
PHOTOS = [IMAGES / "000456.jpg", IMAGES / "000542.jpg", IMAGES / "COCO_train2014_000000131486.jpg"]


@pytest.fixture(scope="session")
def base_config(vqa_dir, detector_dir):
    from service.config import ServeConfig

    return ServeConfig(model=str(vqa_dir), detector=str(detector_dir), device="cpu")


@pytest.fixture(scope="session")
def models(base_config):
    from service.models import load_models

    return load_models(base_config)


@pytest.fixture(scope="session")
def task_models(base_config, vqa_dir, matching_dir):
    """Models that serve /v1/gqa (the tiny VQA checkpoint under the GQA task: softmax scores) and /v1/match."""
    import dataclasses

    from service.models import load_models

    return load_models(dataclasses.replace(base_config, gqa_model=str(vqa_dir), match_model=str(matching_dir)))


@pytest.fixture(scope="session")
def reference(vqa_dir, matching_dir, detector_dir):
    """The oracle: pipeline(task) as a user builds it, loaded apart from the server's models."""
    from pipelines import pipeline

    def build(task: str, model=vqa_dir):
        return pipeline(task, model=model, detector=detector_dir, device="cpu")

    return {
        "vqa": build("vqa"),
        "gqa": build("gqa"),
        "match": build("image-text-matching", model=matching_dir),
    }


@pytest.fixture(scope="session")
def photos() -> list[bytes]:
    return [path.read_bytes() for path in PHOTOS]


@pytest.fixture
def serve(base_config, models):
    """serve(models=..., **ServeConfig changes) -> a TestClient of a new app, its lifespan running until the
    test ends."""
    import dataclasses

    from service.app import create_app

    with ExitStack() as stack:

        def start(served=None, **changes):
            config = dataclasses.replace(base_config, **changes)
            return stack.enter_context(TestClient(create_app(config, models=served or models)))

        yield start


class StageCalls:
    """Wraps a stage function of a running app's device worker: records the size of each batch; with `gate`,
    holds each call until the gate opens (`entered` is set once a call waits there)."""

    def __init__(self, function: Callable, gate: threading.Event | None = None):
        self.function = function
        self.gate = gate
        self.batches: list[int] = []
        self.entered = threading.Event()

    def __call__(self, works):
        self.batches.append(len(works))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        return self.function(works)


def wrap_stage(client, stage: str, gate: threading.Event | None = None) -> StageCalls:
    """Wrap `stage` ("detect" or "answer") of the client's app."""
    worker = client.app.state.service.worker
    calls = StageCalls(getattr(worker, stage), gate)
    setattr(worker, stage, calls)
    return calls
