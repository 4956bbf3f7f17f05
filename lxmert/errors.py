"""The lxmert package's checkpoint error, and how its messages list names (a file can hold millions)."""

from __future__ import annotations

# Error messages quote at most this many names, each cut to NAME_CHARS characters.
LISTED_NAMES = 10
NAME_CHARS = 200


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or its tensors do not fit the model (names and shapes say which)."""


def name_list(names: list[str], limit: int = LISTED_NAMES) -> str:
    """`names` for an error message: the first `limit`, each cut short, and how many more there are."""
    shown = ", ".join(clip_name(name) for name in names[:limit])
    return shown + (f" ... and {len(names) - limit:,} more" if len(names) > limit else "")


def clip_name(name: str) -> str:
    """`name` cut to NAME_CHARS characters for an error message, saying how long it was."""
    return name if len(name) <= NAME_CHARS else f"{name[:NAME_CHARS]}... ({len(name):,} characters)"
