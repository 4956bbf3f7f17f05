"""The device worker with stand-in stage functions (no models): batches gathered up to max_batch_size or until
max_wait_ms, the detector's works passed on to LXMERT, a failing batch rerun one work at a time, the bounded
queue, cancelled works skipped, stop. Where an order matters, a test holds the worker's stage call on an event
while the next works queue, and waits without delay (max_wait_ms=0) otherwise: no outcome depends on timing."""

from __future__ import annotations

import asyncio
import threading

import pytest

from service.batching import DeviceWorker, QueueFull, Work, WorkerStopped


class Stage:
    """A stage function that records its batches; `gate` (when set) holds every call until it is opened."""

    def __init__(self, output=lambda work: work.image, gate: threading.Event | None = None):
        self.output = output
        self.gate = gate
        self.batches: list[list[Work]] = []
        self.entered = threading.Event()

    def __call__(self, works: list[Work]) -> list:
        self.batches.append(list(works))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        return [self.output(work) for work in works]


def worker(detect: Stage, answer: Stage, **options) -> DeviceWorker:
    settings = {"max_batch_size": 4, "max_wait_ms": 0, "queue_size": 16} | options
    return DeviceWorker(detect, answer, **settings)


async def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_works_queued_while_the_device_is_busy_share_a_batch():
    gate = threading.Event()
    detect = Stage(output=lambda work: f"regions of {work.image}", gate=gate)
    answer = Stage(output=lambda work: [f"{text} @ {work.regions}" for text in work.texts])
    device = worker(detect, answer)

    async def scenario():
        device.start()
        first = asyncio.ensure_future(device.run(Work(image="a", task="vqa", texts=["q"])))
        await wait_for(detect.entered.is_set)  # "a" is on the device, alone
        rest = [asyncio.ensure_future(device.run(Work(image=name, task="vqa", texts=["q"]))) for name in "bcde"]
        await wait_for(lambda: device.depth("detector") == 4)
        gate.set()
        return await asyncio.gather(first, *rest)

    done = asyncio.run(scenario())
    device.stop()
    assert [[work.image for work in batch] for batch in detect.batches] == [["a"], ["b", "c", "d", "e"]]
    # "a" reached LXMERT as b..e were detected (the oldest queue goes first), so it joined them
    assert [[work.image for work in batch] for batch in answer.batches] == [["a", "b", "c", "d"], ["e"]]
    assert [work.results for work in done] == [[f"q @ regions of {name}"] for name in "abcde"]
    assert all(work.timings["detector"] > 0 for work in done)


def test_a_batch_waits_at_most_max_wait_ms():
    detect, answer = Stage(), Stage(output=lambda work: ["answer"])
    device = worker(detect, answer, max_batch_size=8, max_wait_ms=20)  # 1 of 8: it waits 20 ms, then runs

    async def scenario():
        device.start()
        return await asyncio.wait_for(device.run(Work(image="a", task="vqa", texts=["q"])), 5)

    work = asyncio.run(scenario())
    device.stop()
    assert work.results == ["answer"] and len(detect.batches) == 1 and len(answer.batches) == 1


def test_lxmert_batches_count_pairs_and_known_regions_skip_the_detector():
    gate = threading.Event()
    detect = Stage()
    answer = Stage(output=lambda work: list(work.texts), gate=gate)
    device = worker(detect, answer, max_batch_size=4)

    async def scenario():
        device.start()
        first = asyncio.ensure_future(device.run(Work(regions="r0", task="vqa", texts=["a", "b", "c", "d"])))
        await wait_for(answer.entered.is_set)
        # 3 pairs and 2 pairs: together over the 4 pairs of a batch, so they go in two batches
        second = asyncio.ensure_future(device.run(Work(regions="r1", task="vqa", texts=["e", "f", "g"])))
        third = asyncio.ensure_future(device.run(Work(regions="r2", task="vqa", texts=["h", "i"])))
        await wait_for(lambda: device.depth("lxmert") == 2)
        gate.set()
        return await asyncio.gather(first, second, third)

    done = asyncio.run(scenario())
    device.stop()
    assert detect.batches == []
    assert [[work.regions for work in batch] for batch in answer.batches] == [["r0"], ["r1"], ["r2"]]
    assert [work.results for work in done] == [["a", "b", "c", "d"], ["e", "f", "g"], ["h", "i"]]


def test_a_failing_batch_fails_only_its_bad_work():
    gate = threading.Event()

    def output(work):
        if work.image == "bad":
            raise ValueError("bad image")
        return work.image

    detect = Stage(output=output, gate=gate)
    device = worker(detect, Stage())

    async def scenario():
        device.start()
        first = asyncio.ensure_future(device.run(Work(image="first")))
        await wait_for(detect.entered.is_set)
        others = [asyncio.ensure_future(device.run(Work(image=name))) for name in ("good", "bad", "fine", "ok")]
        await wait_for(lambda: device.depth("detector") == 4)
        gate.set()
        return await asyncio.gather(first, *others, return_exceptions=True)

    first, good, bad, fine, ok = asyncio.run(scenario())
    device.stop()
    assert [work.regions for work in (first, good, fine, ok)] == ["first", "good", "fine", "ok"]
    assert isinstance(bad, ValueError) and str(bad) == "bad image"
    # the batch of four failed, then each of its works ran alone
    assert [len(batch) for batch in detect.batches] == [1, 4, 1, 1, 1, 1]


def test_a_full_queue_refuses_and_a_cancelled_work_never_runs():
    gate = threading.Event()
    detect = Stage(gate=gate)
    device = worker(detect, Stage(), queue_size=2, max_batch_size=1)

    async def scenario():
        device.start()
        running = asyncio.ensure_future(device.run(Work(image="running")))
        await wait_for(detect.entered.is_set)
        waiting = asyncio.ensure_future(device.run(Work(image="waiting")))
        given_up = asyncio.ensure_future(device.run(Work(image="given up")))
        await wait_for(lambda: device.depth("detector") == 2)
        with pytest.raises(QueueFull, match="queue-size 2"):
            await device.run(Work(image="one too many"))
        given_up.cancel()
        # the cancellation reaches the work when the loop runs the request again: only then is it marked
        await asyncio.gather(given_up, return_exceptions=True)
        gate.set()
        return await asyncio.gather(running, waiting)

    running, waiting = asyncio.run(scenario())
    device.stop()
    assert (running.regions, waiting.regions) == ("running", "waiting")
    assert [[work.image for work in batch] for batch in detect.batches] == [["running"], ["waiting"]]


def test_stop_fails_the_waiting_works():
    gate = threading.Event()
    detect = Stage(gate=gate)
    device = worker(detect, Stage(), max_batch_size=1)

    async def scenario():
        device.start()
        running = asyncio.ensure_future(device.run(Work(image="running")))
        await wait_for(detect.entered.is_set)
        waiting = asyncio.ensure_future(device.run(Work(image="waiting")))
        await wait_for(lambda: device.depth("detector") == 1)
        stopping = asyncio.get_running_loop().run_in_executor(None, device.stop, 10)
        await asyncio.sleep(0.05)
        gate.set()
        await stopping
        with pytest.raises(WorkerStopped):
            await device.run(Work(image="late"))
        return await asyncio.gather(running, waiting, return_exceptions=True)

    running, waiting = asyncio.run(scenario())
    assert running.regions == "running"  # the batch on the device finished
    assert isinstance(waiting, WorkerStopped)
