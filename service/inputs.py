"""Reading a request: the body (JSON or a multipart form) into where its image is, its texts and its options,
checked against the server's limits: 400 naming the field for bad input, 413 for an image over the upload
limit, 415 for another content type, 422 (schemas.py) for a wrong type.

The body itself is bounded while it is read (app.py's middleware, BodyTooLarge): an upload never fills the
memory before it is refused.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from .config import ServeConfig
from .errors import ApiError, validation_error
from .schemas import MatchForm, MatchRequest, RegionsForm, RegionsRequest, VQAForm, VQARequest

IMAGE_FIELDS = ("image", "image_url", "image_id")
# endpoint kind -> (JSON model, form model, the text fields: one text, several texts (JSON only))
KINDS: dict[str, tuple[type[BaseModel], type[BaseModel], tuple[str, str] | None]] = {
    "vqa": (VQARequest, VQAForm, ("question", "questions")),
    "match": (MatchRequest, MatchForm, ("text", "texts")),
    "regions": (RegionsRequest, RegionsForm, None),
}
_DATA_URL_MARK = ";base64,"
_FORM_EXTRA_FIELDS = 8  # fields of a form besides its texts


class BodyTooLarge(ApiError):
    """A request body larger than the server takes; raised while the body is read."""

    def __init__(self, limit: int):
        super().__init__(
            413,
            f"the request body is larger than {limit:,} bytes, the most this server takes for an image of "
            "--max-upload-mb and its questions; send a smaller image",
        )


@dataclass(frozen=True)
class ImageSource:
    field: str  # "image" (the file's bytes), "image_url" or "image_id"
    value: bytes | str


@dataclass
class ParsedRequest:
    image: ImageSource
    texts: list[str]
    text_field: str | None  # where the texts came from ("question", "questions", "text", "texts")
    options: BaseModel  # the validated request (top_k, explain, attention_layer, num_boxes, dtype)


Offload = Callable[..., Awaitable[Any]]  # runs a blocking function in the server's thread pool


async def read_request(request: Request, kind: str, config: ServeConfig, offload: Offload) -> ParsedRequest:
    """The request of an endpoint of `kind` ("vqa", "match", "regions"), checked; ApiError otherwise. JSON is
    parsed and base64 decoded in the thread pool (`offload`): a 27 MB body would hold the event loop."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        parsed = await offload(_parse_json, await request.body(), kind)
    elif media_type == "multipart/form-data":
        parsed = await _parse_form(request, kind, config)
    else:
        raise ApiError(
            415,
            f"the request body is {media_type or 'of no declared type'}; send multipart/form-data (an image file) or "
            "application/json (see /docs)",
        )
    if isinstance(parsed.image.value, bytes) and len(parsed.image.value) > config.max_upload_bytes:
        raise ApiError(
            413,
            f"the image has {len(parsed.image.value):,} bytes; this server takes at most {config.max_upload_bytes:,} "
            "(--max-upload-mb)",
            field=parsed.image.field,
        )
    check_texts(parsed, config)
    return parsed


def check_texts(parsed: ParsedRequest, config: ServeConfig) -> None:
    """400 naming the field for no texts, too many, an empty one or one over the length limit."""
    field, texts = parsed.text_field, parsed.texts
    if field is None:
        return
    if not texts:
        raise ApiError(400, f"no {field}: send at least one", field=field)
    if len(texts) > config.max_questions:
        raise ApiError(
            400,
            f"{len(texts)} {field.rstrip('s')}s in one request; this server takes at most {config.max_questions} "
            "(--max-questions): split them into several requests",
            field=field,
        )
    for i, text in enumerate(texts):
        name = field if len(texts) == 1 else f"{field}[{i}]"
        if not text.strip():
            raise ApiError(400, f"{name} is empty", field=field)
        if len(text) > config.max_question_chars:
            raise ApiError(
                400,
                f"{name} has {len(text):,} characters; this server takes at most {config.max_question_chars} "
                "(--max-question-chars)",
                field=field,
            )


def _parse_json(body: bytes, kind: str) -> ParsedRequest:
    model_type, _, text_fields = KINDS[kind]
    try:
        model = model_type.model_validate_json(body)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False)) from None
    given = [name for name in IMAGE_FIELDS if getattr(model, name) is not None]
    if len(given) != 1:
        raise ApiError(
            400,
            "send the image as exactly one of image (the file in base64), image_url or image_id; got "
            + (", ".join(given) if given else "none"),
            field="image",
        )
    field = given[0]
    value = getattr(model, field)
    image = ImageSource(field, _base64_bytes(value) if field == "image" else value)
    if text_fields is None:
        return ParsedRequest(image, [], None, model)
    one, many = text_fields
    if (getattr(model, one) is None) == (getattr(model, many) is None):
        raise ApiError(400, f"send exactly one of {one} (a string) or {many} (a list of strings)", field=one)
    if getattr(model, one) is not None:
        return ParsedRequest(image, [getattr(model, one)], one, model)
    return ParsedRequest(image, list(getattr(model, many)), many, model)


async def _parse_form(request: Request, kind: str, config: ServeConfig) -> ParsedRequest:
    _, form_type, text_fields = KINDS[kind]
    # Starlette answers a malformed form (or too many files or fields) with a 400 HTTPException.
    form = await request.form(max_files=1, max_fields=config.max_questions + _FORM_EXTRA_FIELDS)
    try:
        upload = form.get("image")
        if upload is None:
            raise ApiError(400, "no image: send the image file in the field image", field="image")
        if not isinstance(upload, UploadFile):
            raise ApiError(
                400, "image is a text field: send the image as a file (multipart file upload)", field="image"
            )
        values: dict[str, Any] = {key: value for key, value in form.multi_items() if key != "image"}
        values["image"] = await upload.read()
        text_field = None if text_fields is None else text_fields[0]
        if text_field is not None:
            values[text_field] = form.getlist(text_field)
            if not values[text_field]:
                raise ApiError(400, f"no {text_field}: send at least one {text_field} field", field=text_field)
    finally:
        await form.close()  # the upload's spooled temporary file
    try:
        model = form_type.model_validate(values)
    except ValidationError as error:
        raise validation_error(error.errors(include_url=False, include_input=False)) from None
    texts = [] if text_field is None else list(getattr(model, text_field))
    return ParsedRequest(ImageSource("image", model.image), texts, text_field, model)


def _base64_bytes(text: str) -> bytes:
    if text.startswith("data:") and _DATA_URL_MARK in text[:200]:
        text = text[text.index(_DATA_URL_MARK) + len(_DATA_URL_MARK) :]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            400, "image is not valid base64: send the image file's bytes in base64 (or as a data: URL)", field="image"
        ) from None
