"""What `lxmert serve` runs with: the checkpoints, the address and the limits, with their defaults. Plain
Python (no torch, no fastapi): the command line builds its `--help` from it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEFAULT_VQA_MODEL = "unc-nlp/lxmert-vqa-uncased"  # pipelines.registry's "vqa" default, written out: no torch here
DEFAULT_DETECTOR = "unc-nlp/frcnn-vg-finetuned"  # extract.options.DEFAULT_DETECTOR, likewise
TOP_K_MAX = 50
MEGABYTE = 1024 * 1024  # --max-upload-mb counts MiB
# A request body may hold the image as base64 (4 bytes per 3) and the questions besides: the body limit is
# the image limit in base64 plus this much, plus the questions at their longest (6 bytes per character:
# a JSON \uXXXX escape).
BODY_SLACK_BYTES = 64 * 1024
JSON_BYTES_PER_CHAR = 6
RETRY_AFTER_SECONDS = 1  # the Retry-After of a 503 "queue full"


@dataclass(frozen=True)
class ServeConfig:
    """The settings of one server; `check()` refuses impossible values with the flag's name.

    model / gqa_model / match_model: LXMERT checkpoints (hub ids or folders) of /v1/vqa, /v1/gqa and /v1/match
    (None: the VQA default; no /v1/gqa or /v1/match). max_batch_size: images per detector pass and (image,
    question) pairs per LXMERT pass; max_wait_ms: how long the worker waits for a batch to fill. cache_size:
    RegionFeatures kept (0: no cache). queue_size: requests waiting for the device before a 503.
    request_timeout: seconds from a request's start to its answer (then 504). api_key: None: no key needed.
    store: a FeatureStore whose image ids requests may name. num_boxes: regions per image ("36" or "10-100").
    """

    model: str | None = None
    gqa_model: str | None = None
    match_model: str | None = None
    detector: str | None = None
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 8
    max_wait_ms: float = 5.0
    cache_size: int = 256
    max_upload_mb: float = 20.0
    max_image_pixels: int = 40_000_000
    max_questions: int = 16
    max_question_chars: int = 500
    request_timeout: float = 30.0
    queue_size: int = 64
    api_key: str | None = None
    allow_network: bool = False
    store: str | None = None
    num_boxes: str = "36"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MEGABYTE)

    @property
    def max_body_bytes(self) -> int:
        """The most bytes a request body may have: the image in base64 and the questions (BODY_SLACK_BYTES)."""
        texts = self.max_questions * self.max_question_chars * JSON_BYTES_PER_CHAR
        return math.ceil(self.max_upload_bytes * 4 / 3) + texts + BODY_SLACK_BYTES

    @property
    def model_names(self) -> dict[str, str]:
        """What /v1/info says each served task runs on."""
        names = {"vqa": self.model or DEFAULT_VQA_MODEL, "detector": self.detector or DEFAULT_DETECTOR}
        if self.gqa_model:
            names["gqa"] = self.gqa_model
        if self.match_model:
            names["match"] = self.match_model
        return names

    @property
    def tasks(self) -> list[str]:
        """The tasks served: vqa always, gqa and match when their models are given."""
        return ["vqa", *(["gqa"] if self.gqa_model else []), *(["match"] if self.match_model else [])]

    def check(self) -> ServeConfig:
        """This config; ValueError naming the flag of the first impossible value."""
        at_least_one = ("max_batch_size", "max_questions", "max_question_chars", "queue_size", "max_image_pixels")
        for name in at_least_one:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{_flag(name)} {value!r}: expected a whole number >= 1")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ValueError(f"--cache-size {self.cache_size!r}: expected a whole number >= 0 (0: no cache)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port {self.port}: expected 0 to 65535")
        if not 0 <= self.max_wait_ms < math.inf:
            raise ValueError(f"--max-wait-ms {self.max_wait_ms!r}: expected a number >= 0")
        for name in ("max_upload_mb", "request_timeout"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"{_flag(name)} {getattr(self, name)!r}: expected a number > 0")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("--api-key is empty: give a key, or leave the flag (and LXMERT_API_KEY) out")
        _check_box_range(self.num_boxes)
        return self


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_box_range(text: str) -> None:
    # extract.options.parse_box_range's rule, written out: `--help` must not import extract.
    match = re.fullmatch(r"(\d+)(?:-(\d+))?", str(text))
    if not (match and 1 <= int(match[1]) <= int(match[2] or match[1])):
        raise ValueError(f'--num-boxes {text!r}: expected a count like "36" or a range like "10-100"')
