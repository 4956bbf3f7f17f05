"""The JSON of the API as pydantic models: what requests may hold and what responses hold, so that /docs
documents them and a request with a wrong type is a 422 naming the field.

A request sends its image one of three ways: the file itself (multipart `image`, or base64 in JSON `image`),
an http(s) URL (`image_url`, only when the server runs with --allow-network) or the id of an image in the
server's feature store (`image_id`, only with --store). Multipart forms carry the same fields as the JSON
bodies, with the texts as repeated fields (`question`, `text`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import TOP_K_MAX

AttentionLayer = int | Literal["mean", "rollout"]
FeatureDtype = Literal["float16", "float32"]

_TOP_K = Field(5, ge=1, le=TOP_K_MAX, description=f"answers per question, best first (1 to {TOP_K_MAX})")
_EXPLAIN = Field(False, description="also return where each word of the question looked (attention)")
_LAYER = Field(
    -1, description='the attention shown: a cross-modality layer (-1: the last), "mean" (of all) or "rollout"'
)
_NUM_BOXES = Field(None, description='regions the detector keeps: a count ("36") or a range ("10-100"; adaptive)')
_DTYPE = Field("float16", description="the dtype of the returned features")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


# ---------------------------------------------------------------------------------------------------
# Requests: JSON bodies


class ImageFields(_Strict):
    image: str | None = Field(None, description="the image file (JPEG, PNG, ...) in base64; a data: URL works too")
    image_url: str | None = Field(None, description="an http(s) URL of the image (only with --allow-network)")
    image_id: str | None = Field(None, description="the id of an image in the server's feature store (--store)")


class VQARequest(ImageFields):
    question: str | None = Field(None, description="one question")
    questions: list[str] | None = Field(None, description="several questions about the same image")
    top_k: int = _TOP_K
    explain: bool = _EXPLAIN
    attention_layer: AttentionLayer = _LAYER


class RegionsRequest(ImageFields):
    num_boxes: str | int | None = _NUM_BOXES
    dtype: FeatureDtype = _DTYPE


class MatchRequest(ImageFields):
    text: str | None = Field(None, description="one text")
    texts: list[str] | None = Field(None, description="several texts about the same image")


# ---------------------------------------------------------------------------------------------------
# Requests: multipart forms (the same fields; the image is a file, texts repeat)

_FILE = Field(description="the image file (JPEG, PNG, ...)", json_schema_extra={"type": "string", "format": "binary"})


class VQAForm(_Strict):
    image: bytes = _FILE
    question: list[str] = Field(description="one or more questions (repeat the field)")
    top_k: int = _TOP_K
    explain: bool = _EXPLAIN
    attention_layer: AttentionLayer = _LAYER


class RegionsForm(_Strict):
    image: bytes = _FILE
    num_boxes: str | None = _NUM_BOXES
    dtype: FeatureDtype = _DTYPE


class MatchForm(_Strict):
    image: bytes = _FILE
    text: list[str] = Field(description="one or more texts (repeat the field)")


# ---------------------------------------------------------------------------------------------------
# Responses


class ImageInfo(BaseModel):
    sha256: str | None = Field(description="hex SHA-256 of the image bytes; null for an image_id of the store")
    width: int
    height: int


class Region(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in original-image pixels")
    object: str | None
    object_score: float
    attribute: str | None = Field(description="null for a detector without the attribute head")
    attribute_score: float | None


class Answer(BaseModel):
    answer: str
    score: float


class Attention(BaseModel):
    layer: AttentionLayer
    words: list[str] = Field(description='the question as the model read it, "[CLS]" first and "[SEP]" last')
    weights: list[list[float]] = Field(description="per word, a weight per region (each row sums to 1)")
    question: list[float] = Field(description="per region, the mean weight of the words ([CLS], [SEP] left out)")


class QuestionResult(BaseModel):
    question: str
    answers: list[Answer]
    attention: Attention | None = Field(None, description="only with explain=true")


class Timings(BaseModel):
    queue: float = Field(description="milliseconds waited for the device")
    detector: float = Field(description="milliseconds of the detector batch (0 when the regions were known)")
    lxmert: float
    total: float


class VQAResponse(BaseModel):
    task: str
    image: ImageInfo
    cached: bool = Field(description="the regions came from the cache: the detector did not run")
    regions: list[Region]
    results: list[QuestionResult]
    timings_ms: Timings


class RegionsResponse(BaseModel):
    image: ImageInfo
    cached: bool
    num_boxes: int
    dtype: FeatureDtype
    features: str = Field(description="base64 of the .npy file of the (num_boxes, D) features (numpy.load reads it)")
    boxes: list[list[float]] = Field(description="x1, y1, x2, y2 in original-image pixels")
    normalized_boxes: list[list[float]] = Field(description="the boxes divided by the image width and height")
    regions: list[Region]


class MatchResult(BaseModel):
    text: str
    score: float = Field(description="the probability that the text describes the image")
    match: bool


class MatchResponse(BaseModel):
    image: ImageInfo
    cached: bool
    results: list[MatchResult]


class Limits(BaseModel):
    max_upload_bytes: int
    max_image_pixels: int | None
    max_questions: int
    max_question_chars: int
    top_k_max: int


class InfoResponse(BaseModel):
    tasks: list[str]
    explain: bool
    api_key_required: bool
    limits: Limits
    models: dict[str, str]


class StatusResponse(BaseModel):
    status: str


class ErrorDetail(BaseModel):
    status: int
    field: str | None = Field(description="the request field at fault, when one is")
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
