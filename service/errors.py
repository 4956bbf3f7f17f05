"""Every error the server answers, in one shape: `{"error": {"status": 400, "field": "question", "message": "..."}}`
(field: the request field at fault, or null)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error answer: its HTTP status, the message (what is wrong and how to fix it), the field at fault."""

    def __init__(
        self, status: int, message: str, *, field: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"status": self.status, "field": self.field, "message": self.message}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """A 422 from pydantic's (or FastAPI's) validation errors: the first one's field, every one in the message
    (a field's errors together: a union gives one per member)."""
    problems: dict[str | None, list[str]] = {}
    for error in errors:
        problems.setdefault(_field(error.get("loc", ())), []).append(error.get("msg", "invalid"))
    parts = [
        f"{field}: {' or '.join(messages)}" if field else " or ".join(messages) for field, messages in problems.items()
    ]
    message = "; ".join(parts) or "the request does not match its schema (see /docs)"
    return ApiError(422, message, field=next(iter(problems), None))


def _field(location: Sequence[Any]) -> str | None:
    """`questions[2]` for the location ("body", "questions", 2); None for the body as a whole. What follows the
    field's name and indices (the member of a union pydantic tried: "int", "literal[...]") is left out."""
    parts = [part for part in location if part not in ("body", "query", "header", "path")]
    if not parts or not isinstance(parts[0], str):
        return None
    name = parts[0]
    for part in parts[1:]:
        if not isinstance(part, int):
            break
        name += f"[{part}]"
    return name
