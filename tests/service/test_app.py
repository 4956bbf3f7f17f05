"""The HTTP API of `lxmert serve` (the contract: docs/serving.md) through FastAPI's TestClient, on the tiny
checkpoints: answers equal to the pipelines' one-by-one answers (the reference is pipeline(task) built apart),
batching, the cache, explanations, regions as .npy, matching, the feature store, and every error status in the
contract's shape."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from .conftest import TestClient as AppClient  # not "Test...": pytest would collect it
from .conftest import wrap_stage

QUESTIONS = ["what color is the dog?", "is there a table?", "how many people are there?"]
# As tests/pipelines/test_vqa.py's SCORE_TOL: float32 through the same kernels, where batching (several questions,
# padded to one length) changes the summation order only. Region features of one image are compared exactly.
TOL = 1e-5


def assert_same_answers(actual: list[dict], expected: list[dict]) -> None:
    assert [a["answer"] for a in actual] == [a["answer"] for a in expected]
    np.testing.assert_allclose([a["score"] for a in actual], [a["score"] for a in expected], atol=TOL, rtol=0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def ask(client, image: bytes, questions, path: str = "/v1/vqa", **fields):
    """A multipart request: the image file and the questions as repeated fields."""
    data = {"question": questions, **{name: str(value) for name, value in fields.items()}}
    return client.post(path, files={"image": ("photo.jpg", image, "image/jpeg")}, data=data)


def error(response, status: int, field: str | None = None) -> str:
    """The message of an error response, after checking its status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"status", "field", "message"}, body
    assert body["error"]["status"] == status and body["error"]["field"] == field, body
    return body["error"]["message"]


def wait_until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


# -- answers ---------------------------------------------------------------------------------------


def test_vqa_answers_equal_the_pipelines_one_by_one(serve, photos, reference):
    client = serve()
    vqa = reference["vqa"]
    first = ask(client, photos[0], QUESTIONS, top_k=3)
    second = client.post("/v1/vqa", json={"image": b64(photos[1]), "questions": QUESTIONS[:2], "top_k": 2})
    again = client.post("/v1/vqa", json={"image": b64(photos[0]), "question": QUESTIONS[1]})  # default top_k 5
    for response, photo, questions, top_k in (
        (first, photos[0], QUESTIONS, 3),
        (second, photos[1], QUESTIONS[:2], 2),
        (again, photos[0], QUESTIONS[1:2], 5),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        assert [result["question"] for result in body["results"]] == questions
        for result, question in zip(body["results"], questions, strict=True):
            assert set(result) == {"question", "answers"}
            assert_same_answers(result["answers"], vqa(image=photo, question=question, top_k=top_k))
        assert body["task"] == "vqa"
        assert body["image"] == {"sha256": hashlib.sha256(photo).hexdigest(), "width": 500, "height": 375}
        assert set(body["timings_ms"]) == {"queue", "detector", "lxmert", "total"}
        regions = vqa.reader.extractor(photo)[0]
        assert [region["box"] for region in body["regions"]] == regions.boxes.tolist()
        assert body["regions"][0] == {
            "box": regions.boxes[0].tolist(),
            "object": regions.object_names[0],
            "object_score": regions.object_scores[0].item(),
            "attribute": regions.attribute_names[0],
            "attribute_score": regions.attribute_scores[0].item(),
        }
    assert [first.json()["cached"], second.json()["cached"], again.json()["cached"]] == [False, False, True]
    assert again.json()["timings_ms"]["detector"] == 0


def test_explain_gives_the_pipelines_attention(serve, photos, reference):
    client = serve()
    as_json = client.post(
        "/v1/vqa",
        json={
            "image": b64(photos[2]),
            "questions": QUESTIONS[:2],
            "explain": True,
            "attention_layer": "mean",
            "top_k": 2,
        },
    )
    form = ask(client, photos[2], QUESTIONS[2], explain="true", attention_layer=0)
    for response, questions, layer, top_k in ((as_json, QUESTIONS[:2], "mean", 2), (form, QUESTIONS[2:], 0, 5)):
        assert response.status_code == 200, response.text
        for result, question in zip(response.json()["results"], questions, strict=True):
            expected = reference["vqa"](
                image=photos[2], question=question, explain=True, attention_layer=layer, top_k=top_k
            )
            assert result["question"] == question
            assert_same_answers(result["answers"], expected.answers)
            attention = result["attention"]
            assert set(attention) == {"layer", "words", "weights", "question"}
            assert attention["layer"] == layer and attention["words"] == expected.words
            np.testing.assert_allclose(attention["weights"], expected.weights.numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(attention["question"], expected.question_weights.numpy(), atol=TOL, rtol=0)
            assert np.shape(attention["weights"]) == (len(expected.words), len(response.json()["regions"]))


def test_concurrent_requests_share_detector_and_lxmert_passes(serve, photos, reference):
    client = serve(max_batch_size=8, max_wait_ms=0)
    gate = threading.Event()
    detect = wrap_stage(client, "detect", gate)
    answer = wrap_stage(client, "answer")
    worker = client.app.state.service.worker
    asked = [(photos[0], QUESTIONS[0]), (photos[1], QUESTIONS[1]), (photos[2], QUESTIONS[2]), (photos[0], QUESTIONS[2])]
    with ThreadPoolExecutor(len(asked)) as pool:
        # The first request holds the detector; the other three queue meanwhile and go in one detector pass,
        # then all four (image, question) pairs in one LXMERT pass.
        futures = [pool.submit(ask, client, *asked[0])]
        assert detect.entered.wait(30)
        futures += [pool.submit(ask, client, photo, question) for photo, question in asked[1:]]
        wait_until(lambda: worker.depth("detector") == 3)
        gate.set()
        responses = [future.result() for future in futures]
    assert detect.batches == [1, 3] and answer.batches == [4]
    for response, (photo, question) in zip(responses, asked, strict=True):
        assert response.status_code == 200, response.text
        assert_same_answers(response.json()["results"][0]["answers"], reference["vqa"](image=photo, question=question))


def test_the_cache_skips_the_detector_and_drops_the_least_recently_used(serve, photos):
    client = serve(cache_size=2)
    detect = wrap_stage(client, "detect")
    cache = client.app.state.service.cache
    assert ask(client, photos[0], QUESTIONS[0]).json()["cached"] is False
    assert ask(client, photos[0], QUESTIONS[1]).json()["cached"] is True  # a second question: no detector
    assert client.post("/v1/regions", json={"image": b64(photos[0])}).json()["cached"] is True
    assert len(detect.batches) == 1 and (cache.hits, cache.misses) == (2, 1)
    ask(client, photos[1], QUESTIONS[0])
    ask(client, photos[2], QUESTIONS[0])  # the cache holds 2: photo 0, used longest ago, goes
    assert len(cache) == 2
    assert ask(client, photos[0], QUESTIONS[0]).json()["cached"] is False
    assert ask(client, photos[2], QUESTIONS[1]).json()["cached"] is True
    assert len(detect.batches) == 4


def test_region_cache_is_lru_and_counts():
    from service.cache import RegionCache

    cache = RegionCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert ("b" in cache, "a" in cache, "c" in cache) == (False, True, True)
    assert cache.get("b") is None and (cache.hits, cache.misses) == (1, 1)
    nothing = RegionCache(0)
    nothing.put("a", 1)
    assert nothing.get("a") is None and len(nothing) == 0
    with pytest.raises(ValueError, match="max_entries=-1"):
        RegionCache(-1)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_regions_are_the_extractors_as_npy(serve, photos, reference, dtype):
    client = serve()
    extractor = reference["vqa"].reader.extractor
    fixed = client.post("/v1/regions", files={"image": ("p.jpg", photos[1])}, data={"dtype": dtype})
    ranged = client.post("/v1/regions", json={"image": b64(photos[1]), "num_boxes": "10-20", "dtype": dtype})
    for response, num_boxes in ((fixed, 36), (ranged, (10, 20))):
        assert response.status_code == 200, response.text
        body = response.json()
        expected = extractor(photos[1], num_boxes=num_boxes)[0]
        features = np.load(io.BytesIO(base64.b64decode(body["features"])), allow_pickle=False)
        assert features.dtype == np.dtype(dtype) and features.shape == (len(expected), 256)
        np.testing.assert_array_equal(features, expected.features.numpy().astype(dtype))
        assert body["num_boxes"] == len(expected) and body["dtype"] == dtype
        assert body["boxes"] == expected.boxes.tolist()
        assert body["normalized_boxes"] == expected.normalized_boxes.tolist()
        assert [region["object"] for region in body["regions"]] == expected.object_names
    assert 10 <= ranged.json()["num_boxes"] <= 20


def test_gqa_and_match_when_served(serve, task_models, photos, reference, vqa_dir, matching_dir):
    client = serve(task_models, gqa_model=str(vqa_dir), match_model=str(matching_dir))
    info = client.get("/v1/info").json()
    assert info["tasks"] == ["vqa", "gqa", "match"]
    assert info["models"]["gqa"] == str(vqa_dir) and info["models"]["match"] == str(matching_dir)
    gqa = ask(client, photos[0], QUESTIONS[:2], path="/v1/gqa")
    assert gqa.status_code == 200, gqa.text
    assert gqa.json()["task"] == "gqa"
    for result, question in zip(gqa.json()["results"], QUESTIONS[:2], strict=True):
        assert_same_answers(result["answers"], reference["gqa"](image=photos[0], question=question))
    texts = ["a dog on a table", "two people"]
    match = client.post("/v1/match", files={"image": ("p.jpg", photos[0])}, data={"text": texts})
    as_json = client.post("/v1/match", json={"image": b64(photos[0]), "text": texts[1]})
    expected = [reference["match"](image=photos[0], text=text) for text in texts]
    assert match.status_code == 200, match.text
    assert match.json()["cached"] is True  # the GQA request found the regions
    for response, sent, wanted in ((match, texts, expected), (as_json, texts[1:], expected[1:])):
        results = response.json()["results"]
        assert [(result["text"], result["match"]) for result in results] == [
            (text, result["match"]) for text, result in zip(sent, wanted, strict=True)
        ]
        np.testing.assert_allclose([r["score"] for r in results], [r["score"] for r in wanted], atol=TOL, rtol=0)


def test_tasks_not_served_and_unknown_endpoints_are_404(serve):
    client = serve()
    assert "--gqa-model" in error(client.post("/v1/gqa", json={}), 404)
    assert "--match-model" in error(client.post("/v1/match", json={}), 404)
    assert error(client.get("/v1/nothing"), 404) == "no endpoint GET /v1/nothing: see /docs for the API"
    assert "allowed: POST" in error(client.get("/v1/vqa"), 405)


@pytest.fixture
def photo_site(photos):
    """A web server on 127.0.0.1 with photo 0 at /photo.jpg."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/photo.jpg":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(photos[0])))
            self.end_headers()
            self.wfile.write(photos[0])

        def log_message(self, *args):
            pass

    site = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{site.server_address[1]}"
    site.shutdown()
    site.server_close()


def test_image_urls_only_with_allow_network(serve, photos, photo_site, reference):
    client = serve(allow_network=True)
    response = client.post("/v1/vqa", json={"image_url": f"{photo_site}/photo.jpg", "question": QUESTIONS[0]})
    assert response.status_code == 200, response.text
    assert response.json()["image"]["sha256"] == hashlib.sha256(photos[0]).hexdigest()
    assert_same_answers(
        response.json()["results"][0]["answers"], reference["vqa"](image=photos[0], question=QUESTIONS[0])
    )
    missing = client.post("/v1/vqa", json={"image_url": f"{photo_site}/missing.jpg", "question": "what?"})
    assert "HTTP Error 404" in error(missing, 400, "image_url")
    assert "http(s) URL" in error(
        client.post("/v1/vqa", json={"image_url": "file:///etc/passwd", "question": "what?"}), 400, "image_url"
    )
    offline = serve().post("/v1/vqa", json={"image_url": f"{photo_site}/photo.jpg", "question": "what?"})
    assert "--allow-network" in error(offline, 400, "image_url")


# -- the feature store -----------------------------------------------------------------------------

STORED_ID = "COCO_val2014_000000000456"


@pytest.fixture(scope="module")
def store_models(base_config, reference, photos, tmp_path_factory):
    """Models with a feature store holding photo 0's regions under STORED_ID."""
    from extract.jobs.records import regions_to_record
    from extract.store import StoreMetadata, StoreWriter
    from service.models import load_models

    path = tmp_path_factory.mktemp("store") / "features.h5"
    metadata = StoreMetadata(
        num_boxes="36", rule="caffe", detector_config={}, checkpoint_sha256="0" * 64, feature_dim=256
    )
    with StoreWriter(path, metadata=metadata, feature_dtype="float32") as writer:
        writer.append([regions_to_record(STORED_ID, reference["vqa"].reader.extractor(photos[0])[0])])
    models = load_models(dataclasses.replace(base_config, store=str(path)))
    yield models
    models.close()


def test_image_ids_come_from_the_store_only(serve, store_models, reference):
    from extract.store.store import display_names

    client = serve(store_models, store=str(store_models.store.path))
    response = client.post("/v1/vqa", json={"image_id": STORED_ID, "questions": QUESTIONS[:2]})
    assert response.status_code == 200, response.text
    body = response.json()
    record = store_models.store[STORED_ID]
    assert body["image"] == {"sha256": None, "width": 500, "height": 375} and body["cached"] is False
    for result, question in zip(body["results"], QUESTIONS[:2], strict=True):
        expected = reference["vqa"](image_id=STORED_ID, store=store_models.store, question=question)
        assert_same_answers(result["answers"], expected)
    assert [region["object"] for region in body["regions"]] == display_names("objects", record.object_ids)
    regions = client.post("/v1/regions", json={"image_id": STORED_ID, "dtype": "float32"}).json()
    np.testing.assert_array_equal(np.load(io.BytesIO(base64.b64decode(regions["features"]))), record.features)
    for unknown in ("COCO_val2014_000000000457", "../../../etc/passwd", str(store_models.store.path)):
        message = error(client.post("/v1/vqa", json={"image_id": unknown, "question": "what?"}), 400, "image_id")
        assert repr(unknown) in message
    assert "(36 boxes" in error(
        client.post("/v1/regions", json={"image_id": STORED_ID, "num_boxes": "10-100"}), 400, "num_boxes"
    )


# -- errors ----------------------------------------------------------------------------------------

PNG = b64(tiny_png())


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"image": PNG, "questions": ["what?"] * 17}, "questions", "17 questions in one request"),
        ({"image": PNG, "question": "x" * 501}, "question", "501 characters"),
        ({"image": PNG, "questions": ["what?", " "]}, "questions", "questions[1] is empty"),
        ({"image": PNG, "question": "\u200b\u200b"}, "question", "no words"),
        ({"image": PNG}, "question", "exactly one of question"),
        ({"image": PNG, "question": "what?", "questions": ["what?"]}, "question", "exactly one of question"),
        ({"question": "what?"}, "image", "got none"),
        ({"image": PNG, "image_id": "1", "question": "what?"}, "image", "got image, image_id"),
        ({"image": "not base64!", "question": "what?"}, "image", "not valid base64"),
        ({"image_url": "https://example.com/cat.jpg", "question": "what?"}, "image_url", "--allow-network"),
        ({"image_id": "1", "question": "what?"}, "image_id", "--store"),
        ({"image": PNG, "question": "what?", "explain": True, "attention_layer": 2}, "attention_layer", "from -2 to 1"),
    ],
)
def test_bad_input_is_400_naming_the_field(serve, body, field, words):
    assert words in error(serve().post("/v1/vqa", json=body), 400, field)


def test_bad_form_input_and_box_counts_are_400(serve):
    client = serve()
    png = tiny_png()
    assert "no image" in error(
        client.post("/v1/vqa", data={"question": "what?"}, files={"x": ("x", b"")}), 400, "image"
    )
    as_text = client.post("/v1/vqa", files={"image": (None, "abc"), "question": (None, "what?")})
    assert "as a file" in error(as_text, 400, "image")
    assert "no question" in error(client.post("/v1/vqa", files={"image": ("p.png", png)}), 400, "question")
    assert "10-100" in error(client.post("/v1/regions", json={"image": PNG, "num_boxes": "ten"}), 400, "num_boxes")
    assert error(client.post("/v1/match", json={}), 404)  # checked before the body: the task is not served


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"top_k": 0}, "top_k"),
        ({"top_k": 51}, "top_k"),
        ({"top_k": "three"}, "top_k"),
        ({"explain": "maybe"}, "explain"),
        ({"attention_layer": "last"}, "attention_layer"),
        ({"questoin": "what?"}, "questoin"),
        ({"question": ["a list"]}, "question"),
    ],
)
def test_schema_errors_are_422_naming_the_field(serve, changes, field):
    response = serve().post("/v1/vqa", json={"image": PNG, "question": "what?"} | changes)
    assert error(response, 422, field).startswith(f"{field}: ")


def test_other_schema_errors_are_422_in_the_same_shape(serve):
    client = serve()
    assert "JSON" in error(
        client.post("/v1/vqa", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    form = client.post("/v1/vqa", files={"image": ("p.png", tiny_png())}, data={"question": "what?", "top_k": "x"})
    error(form, 422, "top_k")
    assert error(client.post("/v1/regions", json={"image": PNG, "dtype": "int8"}), 422, "dtype")

    # FastAPI's own validation (of a typed route) is reshaped too
    @client.app.get("/typed")
    async def typed(count: int) -> dict:
        return {"count": count}

    assert error(client.get("/typed", params={"count": "many"}), 422, "count")


def test_too_large_is_413(serve, photos, models, monkeypatch):
    client = serve(max_upload_mb=0.05)  # 52,428 bytes; the photos have 105 kB and more
    assert "at most 52,428 (--max-upload-mb)" in error(ask(client, photos[0], "what?"), 413, "image")
    error(client.post("/v1/vqa", json={"image": b64(photos[0]), "question": "what?"}), 413, "image")
    limit = client.app.state.service.config.max_body_bytes
    # refused for its Content-Length, before it is read; and a body of unknown length, as it is read
    declared = client.post("/v1/vqa", content=b"0" * (limit + 1), headers={"content-type": "application/json"})
    assert f"larger than {limit:,} bytes" in error(declared, 413)
    chunks = (b"0" * 65536 for _ in range(limit // 65536 + 2))
    error(client.post("/v1/vqa", content=chunks, headers={"content-type": "application/json"}), 413)

    monkeypatch.setattr(models.extractor, "max_image_pixels", 10_000)  # the extractor's limit decides
    assert "max_image_pixels=10000" in error(ask(serve(), photos[0], "what?"), 413, "image")


def test_not_an_image_is_415(serve):
    client = serve()
    assert "not an image format" in error(ask(client, b"GIF89a but not really", "what?"), 415, "image")
    plain = client.post("/v1/vqa", content=b"what?", headers={"content-type": "text/plain"})
    assert "multipart/form-data" in error(plain, 415)


def test_the_api_key(serve):
    client = serve(api_key="s3cret")
    body = {"question": "what?"}  # no image: a 400 once past the key check
    missing = client.post("/v1/vqa", json=body)
    assert "no API key" in error(missing, 401) and missing.headers["WWW-Authenticate"] == "Bearer"
    assert "wrong API key" in error(client.post("/v1/vqa", json=body, headers={"Authorization": "Bearer s3cre"}), 401)
    error(client.post("/v1/vqa", json=body, headers={"X-API-Key": "S3CRET"}), 401)
    error(client.get("/metrics"), 401)
    error(client.post("/v1/vqa", json=body, headers={"Authorization": "Bearer s3cret"}), 400, "image")
    error(client.post("/v1/regions", json={}, headers={"X-API-Key": "s3cret"}), 400, "image")
    assert client.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
    for path in ("/healthz", "/readyz", "/v1/info", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/info").json()["api_key_required"] is True


def test_a_full_queue_is_503_with_retry_after(serve, photos):
    client = serve(queue_size=1, max_batch_size=1)
    gate = threading.Event()
    detect = wrap_stage(client, "detect", gate)
    worker = client.app.state.service.worker
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(ask, client, photos[0], "what?")
        assert detect.entered.wait(30)
        waiting = pool.submit(ask, client, photos[1], "what?")
        wait_until(lambda: worker.depth("detector") == 1)
        refused = ask(client, photos[2], "what?")
        gate.set()
        assert running.result().status_code == 200 and waiting.result().status_code == 200
    assert "--queue-size 1" in error(refused, 503) and refused.headers["Retry-After"] == "1"


def test_too_many_requests_at_once_are_503_before_their_bodies_are_read(serve):
    client = serve(queue_size=1)
    service = client.app.state.service
    service.lifecycle.in_flight = service.max_in_flight  # as if that many were being answered
    try:
        refused = client.post("/v1/vqa", json={"question": "what?"})
    finally:
        service.lifecycle.in_flight = 0
    assert "the server is busy" in error(refused, 503) and refused.headers["Retry-After"] == "1"
    error(client.post("/v1/vqa", json={"question": "what?"}), 400, "image")  # read once there is room


def test_a_slow_request_is_504(serve, photos):
    client = serve(request_timeout=0.5)
    gate = threading.Event()
    wrap_stage(client, "detect", gate)
    try:
        assert "--request-timeout" in error(ask(client, photos[0], "what?"), 504)
    finally:
        gate.set()


def test_loading_and_draining_are_503(serve, base_config, models):
    from service.app import create_app

    loading = AppClient(create_app(base_config, models=models))  # no `with`: the lifespan has not run
    assert loading.get("/readyz").status_code == 503 and loading.get("/readyz").json() == {"status": "loading"}
    assert "loading" in error(loading.post("/v1/vqa", json={}), 503)
    assert loading.get("/healthz").json() == {"status": "ok"}

    client = serve()
    assert client.get("/readyz").json() == {"status": "ready"}
    client.app.state.service.lifecycle.start_draining()
    assert client.get("/readyz").status_code == 503 and client.get("/readyz").json() == {"status": "draining"}
    assert "shutting down" in error(client.post("/v1/vqa", json={}), 503)
    assert client.get("/healthz").status_code == 200 and client.get("/v1/info").status_code == 200


def test_the_lifespan_loads_the_models_itself(base_config, photos):
    from service.app import create_app

    with AppClient(create_app(base_config)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        assert ask(client, photos[0], "what?").status_code == 200


# -- the rest of the contract ----------------------------------------------------------------------


def test_info_health_docs_and_page(serve, base_config):
    client = serve()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/info").json() == {
        "tasks": ["vqa"],
        "explain": True,
        "api_key_required": False,
        "limits": {
            "max_upload_bytes": 20 * 1024 * 1024,
            "max_image_pixels": 40_000_000,
            "max_questions": 16,
            "max_question_chars": 500,
            "top_k_max": 50,
        },
        "models": {"vqa": base_config.model, "detector": base_config.detector},
    }
    assert "swagger" in client.get("/docs").text.lower()
    schema = client.get("/openapi.json").json()
    assert {"/v1/vqa", "/v1/gqa", "/v1/match", "/v1/regions", "/v1/info", "/healthz", "/readyz"} <= set(schema["paths"])
    vqa = schema["paths"]["/v1/vqa"]["post"]
    assert set(vqa["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert vqa["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VQAResponse"
    }
    assert {"VQAResponse", "RegionsResponse", "MatchResponse", "ErrorResponse"} <= set(schema["components"]["schemas"])
    page = client.get("/")
    from service.app import STATIC

    if (STATIC / "index.html").is_file():
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    else:
        assert "index.html" in error(page, 404)


def test_metrics_after_requests(serve, photos):
    client = serve()
    ask(client, photos[0], "what?")
    ask(client, photos[0], "and now?")
    client.get("/nothing")
    text = client.get("/metrics").text
    for line in (
        'lxmert_requests_total{endpoint="/v1/vqa",status="200"} 2.0',
        'lxmert_requests_total{endpoint="unmatched",status="404"} 1.0',
        'lxmert_stage_seconds_count{stage="decode"} 2.0',
        'lxmert_stage_seconds_count{stage="detector"} 1.0',
        'lxmert_stage_seconds_count{stage="lxmert"} 2.0',
        'lxmert_stage_seconds_count{stage="total"} 2.0',
        'lxmert_batch_size_count{stage="detector"} 1.0',
        'lxmert_queue_depth{stage="detector"} 0.0',
        "lxmert_cache_hits_total 1.0",
        "lxmert_cache_misses_total 1.0",
        "lxmert_requests_in_flight 0.0",
    ):
        assert line in text, line
    assert 'endpoint="/v1/vqa"' not in serve().get("/metrics").text  # each app counts its own
