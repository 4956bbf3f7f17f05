"""The FastAPI app of `lxmert serve`: `create_app(config, models=None)`.

A request to /v1/vqa goes: the middleware (draining? body too large? metrics) -> the API key -> inputs.py (the
body, checked) -> the thread pool (hash the bytes; on a cache miss decode the image, or read the store, or
download the URL) -> the device worker (batching.py: the detector unless cached, then LXMERT) -> the JSON of
schemas.py. Every error is `{"error": {"status", "field", "message"}}` (errors.py), FastAPI's own 404 and
422 included.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import io
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from extract.image_errors import ImageLoadError, ImageTooLargeError
from extract.images import load_image
from extract.options import num_boxes_spec, parse_box_range
from pipelines.base import DownloadError, region_dicts, shown
from pipelines.explain import check_attention_layer

from .batching import DeviceWorker, QueueFull, Work, WorkerStopped
from .cache import RegionCache
from .config import RETRY_AFTER_SECONDS, TOP_K_MAX, ServeConfig
from .errors import ApiError, validation_error
from .inputs import BodyTooLarge, ImageSource, ParsedRequest, read_request
from .metrics import ServiceMetrics
from .models import ServedModels, load_models
from .schemas import (
    ErrorResponse,
    InfoResponse,
    MatchForm,
    MatchRequest,
    MatchResponse,
    RegionsForm,
    RegionsRequest,
    RegionsResponse,
    StatusResponse,
    VQAForm,
    VQARequest,
    VQAResponse,
)

STATIC = Path(__file__).resolve().parent / "static"  # the web page (package data)
DECODE_THREADS = min(8, os.cpu_count() or 1)
# After SIGTERM, requests still running this long past the request timeout are given up.
DRAIN_GRACE_SECONDS = 5.0
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "bad input (the field is named)",
        401: "missing or wrong API key",
        404: "task not served",
        413: "upload or image too large",
        415: "not an image",
        422: "request does not match the schema",
        503: "queue full (Retry-After) or shutting down",
        504: "request timeout",
    }.items()
}


class Lifecycle:
    """Whether the server takes requests: ready once its models run, draining after SIGTERM (new API requests
    get 503 while those in flight finish); `in_flight` counts the API requests being answered."""

    def __init__(self) -> None:
        self.ready = False
        self.draining = False
        self.drain_started: float | None = None
        self.in_flight = 0

    def start_draining(self) -> None:
        if not self.draining:
            self.draining, self.drain_started = True, time.monotonic()

    def drained(self, grace: float) -> bool:
        """Draining, and no request is left (or they have run `grace` seconds past the drain's start)."""
        if not self.draining:
            return False
        return self.in_flight == 0 or time.monotonic() - self.drain_started > grace


@dataclass
class Visual:
    """What a request's image gave before the device worker: the regions (cache, store) or the pixels."""

    sha256: str | None
    regions: Any = None  # RegionFeatures (cache) or FeatureRecord (store)
    pixels: np.ndarray | None = None  # (H, W, 3) uint8, for the detector
    cached: bool = False
    cache_key: tuple[str, str] | None = None


class Service:
    """The state of one app: config, models, cache, device worker, thread pool, metrics, lifecycle."""

    def __init__(self, config: ServeConfig, models: ServedModels | None):
        self.config = config
        self.models = models
        self.owns_models = False  # loaded by the lifespan (then closed by it), not passed in
        self.cache = RegionCache(config.cache_size)
        self.lifecycle = Lifecycle()
        self.worker: DeviceWorker | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.metrics = ServiceMetrics(self.cache, self.queue_depth)

    def start(self, models: ServedModels) -> None:
        self.models = models
        batch_size = self.config.max_batch_size
        self.worker = DeviceWorker(
            functools.partial(models.detect, batch_size=batch_size),
            functools.partial(models.answer, batch_size=batch_size),
            max_batch_size=batch_size,
            max_wait_ms=self.config.max_wait_ms,
            queue_size=self.config.queue_size,
            on_detected=self._keep_regions,
            on_batch=self.metrics.observe_batch,
        )
        self.pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="lxmert-decode")
        self.worker.start()
        self.lifecycle.ready = True

    def stop(self) -> None:
        self.lifecycle.ready = False
        if self.worker is not None:
            self.worker.stop(timeout=DRAIN_GRACE_SECONDS)
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        if self.owns_models:
            self.models.close()

    @property
    def max_in_flight(self) -> int:
        """API requests answered at once before new ones get 503 (before their bodies are read): those waiting
        for the device (--queue-size), a batch on it per stage, and those being decoded. It bounds the memory
        that request bodies take."""
        return self.config.queue_size + 2 * self.config.max_batch_size + DECODE_THREADS

    @property
    def num_boxes(self) -> str:
        """--num-boxes as the cache keys write it ("36", "10-100")."""
        return num_boxes_spec(*parse_box_range(self.config.num_boxes))

    def queue_depth(self, stage: str) -> int:
        return 0 if self.worker is None else self.worker.depth(stage)

    def _keep_regions(self, work: Work) -> None:
        if work.cache_key is not None:
            self.cache.put(work.cache_key, work.regions)

    async def offload(self, function: Callable, *args: Any) -> Any:
        """function(*args) in the thread pool: decoding, hashing, JSON parsing, store reads, downloads."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(function, *args))

    # -- a request's image ---------------------------------------------------------------------------

    async def visual(self, source: ImageSource, num_boxes: str) -> Visual:
        """The regions or pixels of the request's image (ApiError naming the field when it has none)."""
        if source.field == "image_id":
            return await self.offload(self._stored, source.value)
        data = source.value
        if source.field == "image_url":
            data = await self.offload(self._download, source.value)
        started = time.monotonic()
        visual = await self.offload(self._decoded, data, num_boxes, source.field)
        self.metrics.stage_seconds.labels("decode").observe(time.monotonic() - started)
        return visual

    def _decoded(self, data: bytes, num_boxes: str, field: str) -> Visual:
        sha256 = hashlib.sha256(data).hexdigest()
        key = (sha256, num_boxes)
        regions = self.cache.get(key)
        if regions is not None:
            return Visual(sha256, regions=regions, cached=True)
        try:
            pixels = load_image(data, max_image_pixels=self.models.extractor.max_image_pixels)
        except ImageTooLargeError as error:
            raise ApiError(413, f"{field}: {error.reason}", field=field) from None
        except ImageLoadError as error:
            raise ApiError(415, f"{field} is not an image this server reads: {error.reason}", field=field) from None
        return Visual(sha256, pixels=pixels, cache_key=key)

    def _stored(self, image_id: str) -> Visual:
        store = self.models.store
        if store is None:
            raise ApiError(400, "this server has no feature store: image_id needs --store", field="image_id")
        if image_id not in store:
            raise ApiError(
                400, f"image id {shown(image_id, 80)} is not in the server's feature store", field="image_id"
            )
        return Visual(None, regions=store[image_id])

    def _download(self, url: str) -> bytes:
        if not self.config.allow_network:
            raise ApiError(
                400, "this server does not download images (start it with --allow-network)", field="image_url"
            )
        if not url[:8].lower().startswith(("http://", "https://")):
            raise ApiError(400, "image_url must be an http(s) URL", field="image_url")
        try:
            return self.models.reader.fetch(url, allow_network=True)
        except (DownloadError, ValueError) as error:
            raise ApiError(400, str(error), field="image_url") from None

    # -- the device ---------------------------------------------------------------------------------

    async def run(self, work: Work) -> Work:
        """`work` through the device worker; ApiError 503 when its queue is full or it stopped, 400 when the
        pipeline refused the input."""
        try:
            return await self.worker.run(work)
        except QueueFull as error:
            raise ApiError(
                503, f"the server is busy: {error}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
            ) from None
        except WorkerStopped as error:
            raise ApiError(503, str(error)) from None
        except (ValueError, TypeError) as error:
            raise ApiError(400, str(error)) from None

    async def within_deadline(self, answer: Callable[[], Any]) -> Any:
        """The answer, or 504 once the request has taken --request-timeout seconds."""
        timeout = self.config.request_timeout
        try:
            return await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"no answer within {timeout:g} s (--request-timeout): the server is overloaded, retry later"
            ) from None


def create_app(config: ServeConfig, *, models: ServedModels | None = None) -> FastAPI:
    """The app of `config`. models: already loaded (tests, `lxmert serve` after its checks); None: the lifespan
    loads them (`load_models`). `app.state.service` holds the Service (worker, cache, lifecycle, metrics)."""
    config.check()
    service = Service(config, models)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service.models is None:
            service.owns_models = True
            service.start(await asyncio.to_thread(load_models, config))
        else:
            service.start(service.models)
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    app = FastAPI(
        title="lxmert serve",
        summary="Visual question answering with LXMERT on the region features of a Visual Genome Faster R-CNN",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    _add_error_handlers(app)
    app.add_middleware(_ServiceMiddleware, service=service)
    auth = [Depends(_api_key_check(config.api_key))] if config.api_key else []

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        if not (STATIC / "index.html").is_file():
            raise ApiError(404, "the web page is not installed (service/static/index.html); the API is at /docs")
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/healthz", response_model=StatusResponse, tags=["health"])
    async def healthz() -> dict:
        """Alive (the process answers)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=StatusResponse, responses={503: {"model": StatusResponse}}, tags=["health"])
    async def readyz() -> Any:
        """200 once the models are loaded; 503 before, and while draining after SIGTERM."""
        lifecycle = service.lifecycle
        if lifecycle.ready and not lifecycle.draining:
            return {"status": "ready"}
        status = "draining" if lifecycle.draining else "loading"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/metrics", dependencies=auth, response_class=Response, tags=["health"])
    async def metrics() -> Response:
        """Prometheus metrics (text format)."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    @app.get("/v1/info", response_model=InfoResponse, tags=["api"])
    async def info() -> dict:
        """The tasks served, the limits and the models (no API key needed: the page reads it first)."""
        extractor = None if service.models is None else service.models.extractor
        return {
            "tasks": config.tasks,
            "explain": True,
            "api_key_required": config.api_key is not None,
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_image_pixels": config.max_image_pixels if extractor is None else extractor.max_image_pixels,
                "max_questions": config.max_questions,
                "max_question_chars": config.max_question_chars,
                "top_k_max": TOP_K_MAX,
            },
            "models": config.model_names,
        }

    answer_options = {
        "response_model_exclude_unset": True,  # "attention" only with explain=true
        "responses": ERROR_RESPONSES,
        "dependencies": auth,
        "tags": ["api"],
    }

    @app.post("/v1/vqa", response_model=VQAResponse, openapi_extra=_request_body(VQARequest, VQAForm), **answer_options)
    async def vqa(request: Request) -> Any:
        """Answer questions about an image (VQA answer head)."""
        return await service.within_deadline(lambda: _answer(service, request, "vqa"))

    @app.post("/v1/gqa", response_model=VQAResponse, openapi_extra=_request_body(VQARequest, VQAForm), **answer_options)
    async def gqa(request: Request) -> Any:
        """Answer questions about an image with the GQA model (only when the server runs --gqa-model)."""
        return await service.within_deadline(lambda: _answer(service, request, "gqa"))

    @app.post(
        "/v1/match",
        response_model=MatchResponse,
        openapi_extra=_request_body(MatchRequest, MatchForm),
        **answer_options,
    )
    async def match(request: Request) -> Any:
        """The probability that each text describes the image (only when the server runs --match-model)."""
        return await service.within_deadline(lambda: _match(service, request))

    @app.post(
        "/v1/regions",
        response_model=RegionsResponse,
        openapi_extra=_request_body(RegionsRequest, RegionsForm),
        **answer_options,
    )
    async def regions(request: Request) -> Any:
        """The detector's regions of an image: features (a base64 .npy), boxes, names and scores."""
        return await service.within_deadline(lambda: _regions(service, request))

    return app


# ---------------------------------------------------------------------------------------------------
# The endpoints' work


async def _answer(service: Service, request: Request, task: str) -> dict:
    started = time.monotonic()
    pipeline = _served(service, task)
    parsed = await read_request(request, "vqa", service.config, service.offload)
    _check_words(pipeline, parsed)
    options = parsed.options
    if options.explain:
        try:
            check_attention_layer(options.attention_layer, pipeline.model.config.x_layers)
        except ValueError as error:
            raise ApiError(400, str(error), field="attention_layer") from None
    num_boxes = service.num_boxes
    visual = await service.visual(parsed.image, num_boxes)
    work = await service.run(
        _work(
            visual,
            num_boxes,
            task,
            parsed.texts,
            top_k=options.top_k,
            explain=options.explain,
            attention_layer=options.attention_layer,
        )
    )
    results = []
    for text, result in zip(parsed.texts, work.results, strict=True):
        if options.explain:
            attention = {
                "layer": options.attention_layer,
                "words": result.words,
                "weights": result.weights.tolist(),
                "question": result.question_weights.tolist(),
            }
            results.append({"question": text, "answers": result.answers, "attention": attention})
        else:
            results.append({"question": text, "answers": result})
    timings = {stage: round(seconds * 1000, 3) for stage, seconds in work.timings.items()}
    return {
        "task": task,
        "image": _image_info(visual, work.regions),
        "cached": visual.cached,
        "regions": region_dicts(work.regions),
        "results": results,
        "timings_ms": timings | {"total": round((time.monotonic() - started) * 1000, 3)},
    }


async def _match(service: Service, request: Request) -> dict:
    pipeline = _served(service, "match")
    parsed = await read_request(request, "match", service.config, service.offload)
    _check_words(pipeline, parsed)
    num_boxes = service.num_boxes
    visual = await service.visual(parsed.image, num_boxes)
    work = await service.run(_work(visual, num_boxes, "match", parsed.texts))
    results = [{"text": text, **result} for text, result in zip(parsed.texts, work.results, strict=True)]
    return {"image": _image_info(visual, work.regions), "cached": visual.cached, "results": results}


async def _regions(service: Service, request: Request) -> dict:
    parsed = await read_request(request, "regions", service.config, service.offload)
    options = parsed.options
    num_boxes = service.num_boxes
    if options.num_boxes is not None:
        try:
            num_boxes = num_boxes_spec(*parse_box_range(str(options.num_boxes)))
        except ValueError as error:
            raise ApiError(400, str(error), field="num_boxes") from None
    visual = await service.visual(parsed.image, num_boxes)
    if visual.sha256 is None and options.num_boxes is not None:
        stored = service.models.store.metadata.num_boxes
        if num_boxes != stored:
            raise ApiError(
                400,
                f"num_boxes {num_boxes}: an image of the store has the store's regions ({stored} boxes per image)",
                field="num_boxes",
            )
    regions = visual.regions
    if visual.pixels is not None:
        regions = (await service.run(_work(visual, num_boxes))).regions
    features = _host(regions.features).astype(options.dtype)
    buffer = io.BytesIO()
    np.save(buffer, features, allow_pickle=False)
    return {
        "image": _image_info(visual, regions),
        "cached": visual.cached,
        "num_boxes": len(features),
        "dtype": options.dtype,
        "features": base64.b64encode(buffer.getvalue()).decode("ascii"),
        "boxes": _host(regions.boxes).tolist(),
        "normalized_boxes": _host(regions.normalized_boxes).tolist(),
        "regions": region_dicts(regions),
    }


def _served(service: Service, task: str) -> Any:
    pipeline = service.models.pipeline(task)
    if pipeline is None:
        flag = {"gqa": "--gqa-model", "match": "--match-model"}[task]
        raise ApiError(404, f"this server does not serve {task}: start it with {flag} (see /v1/info for its tasks)")
    return pipeline


def _check_words(pipeline: Any, parsed: ParsedRequest) -> None:
    """400 for a text of only characters the tokenizer drops: LXMERT would read an empty question."""
    for i, text in enumerate(parsed.texts):
        if not pipeline.tokenizer.tokenize(text):
            name = parsed.text_field if len(parsed.texts) == 1 else f"{parsed.text_field}[{i}]"
            raise ApiError(400, f"{name} has no words (only control or invisible characters)", field=parsed.text_field)


def _work(visual: Visual, num_boxes: str, task: str | None = None, texts: Sequence[str] = (), **options: Any) -> Work:
    """The device's work for a request: detect (unless the regions are known) `num_boxes` regions, then run
    `task` on the texts; options: Work's top_k, explain, attention_layer."""
    low, high = parse_box_range(num_boxes)
    return Work(
        image=visual.pixels,
        regions=visual.regions,
        num_boxes=low if low == high else (low, high),
        cache_key=visual.cache_key,
        task=task,
        texts=list(texts),
        **options,
    )


def _host(values: Any) -> np.ndarray:
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def _image_info(visual: Visual, regions: Any) -> dict:
    if hasattr(regions, "image_size"):  # RegionFeatures
        height, width = regions.image_size
    else:  # a FeatureRecord of the store
        height, width = regions.height, regions.width
    return {"sha256": visual.sha256, "width": int(width), "height": int(height)}


# ---------------------------------------------------------------------------------------------------
# Plumbing: the API key, errors, the middleware, the documented request bodies


_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: KEY")


def _api_key_check(key: str) -> Callable:
    expected = key.encode("utf-8")

    async def require_api_key(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
        api_key: Annotated[str | None, Security(_KEY_HEADER)],
    ) -> None:
        given = [value for value in (credentials and credentials.credentials, api_key) if value]
        # compare_digest: the time taken does not tell how much of a guess was right
        if not any(hmac.compare_digest(value.encode("utf-8"), expected) for value in given):
            problem = "wrong API key" if given else "no API key"
            raise ApiError(
                401,
                f"{problem}: send it as Authorization: Bearer KEY or X-API-Key: KEY",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_api_key


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def schema_error(request: Request, error: RequestValidationError) -> Response:
        return validation_error(error.errors()).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            message = f"no endpoint {request.method} {request.url.path}: see /docs for the API"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {error.headers.get('Allow')})"
        else:
            message = str(error.detail)
        return ApiError(error.status_code, message, headers=error.headers).response()

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> Response:
        return ApiError(500, f"internal error: {type(error).__name__}: {error}").response()


class _ServiceMiddleware:
    """For every HTTP request: metrics (requests by route and status, total latency). For /v1/ requests: 503
    while not ready, while draining or with max_in_flight requests answered already, 413 for a body over the
    limit (its Content-Length, or counted as it is read), the in-flight count the drain waits for."""

    def __init__(self, app: Any, service: Service):
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service, started, status = self.service, time.monotonic(), 500
        api = scope["path"].startswith("/v1/") and scope["path"] != "/v1/info"

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope) if api else None
            if refusal is not None:
                await refusal.response()(scope, receive, send_status)
                return
            if api:
                service.lifecycle.in_flight += 1
                service.metrics.in_flight.inc()
            try:
                await self.app(scope, _bounded(receive, service.config.max_body_bytes), send_status)
            finally:
                if api:
                    service.lifecycle.in_flight -= 1
                    service.metrics.in_flight.dec()
                    service.metrics.stage_seconds.labels("total").observe(time.monotonic() - started)
        finally:
            route = scope.get("route")
            service.metrics.requests.labels(getattr(route, "path", "unmatched"), str(status)).inc()

    def _refusal(self, scope: dict) -> ApiError | None:
        lifecycle = self.service.lifecycle
        if lifecycle.draining:
            return ApiError(503, "the server is shutting down: send the request again (to another instance)")
        if not lifecycle.ready:
            return ApiError(503, "the server is loading its models: retry shortly", headers={"Retry-After": "5"})
        if lifecycle.in_flight >= self.service.max_in_flight:
            return ApiError(
                503,
                f"the server is busy: {lifecycle.in_flight} requests are being answered (--queue-size "
                f"{self.service.config.queue_size}); retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        limit = self.service.config.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return BodyTooLarge(limit)
        return None


def _bounded(receive: Callable, limit: int) -> Callable:
    """`receive` that raises BodyTooLarge once the body passes `limit` bytes (for bodies of unknown length)."""
    received = 0

    async def bounded_receive() -> dict:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return bounded_receive


def _request_body(json_model: type, form_model: type) -> dict:
    """OpenAPI's requestBody of an endpoint that reads both JSON and multipart forms (parsed by inputs.py)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_model.model_json_schema()},
                "multipart/form-data": {"schema": form_model.model_json_schema()},
            },
        }
    }
