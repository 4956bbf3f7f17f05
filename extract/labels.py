"""Names of the Visual Genome object classes and attributes, shipped with the package.

extract/data/vg_objects_vocab.txt (1,600 lines) and vg_attributes_vocab.txt (400 lines) are the
vocabularies of bottom-up-attention's VG model: line i names foreground class (attribute) id i, the
0-based ids of `Regions.object_ids` / `attribute_ids`. A line lists synonyms separated by commas
("gray,grey"); the first is the display name.

The files do not say which model they belong to, so they are used only for a model whose class
(attribute) count equals theirs; any other model gets generic names, "class_17" / "attribute_5", so
that names are always strings and never silently wrong.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

VOCABULARY_FILES = {"objects": "vg_objects_vocab.txt", "attributes": "vg_attributes_vocab.txt"}
GENERIC_PREFIX = {"objects": "class", "attributes": "attribute"}


@cache
def vg_synonyms(kind: str) -> tuple[tuple[str, ...], ...]:
    """The shipped vocabulary of "objects" or "attributes": entry i = the synonyms of id i."""
    if kind not in VOCABULARY_FILES:
        raise ValueError(f"unknown vocabulary {kind!r}: expected one of {', '.join(VOCABULARY_FILES)}")
    text = resources.files("extract").joinpath("data", VOCABULARY_FILES[kind]).read_text(encoding="utf-8")
    return tuple(tuple(name.strip() for name in line.split(",")) for line in text.splitlines())


@cache
def class_names(kind: str, count: int) -> tuple[str, ...]:
    """Display names of `count` "objects" or "attributes": the shipped VG names when the vocabulary
    has exactly `count` entries, else "class_<i>" / "attribute_<i>"."""
    synonyms = vg_synonyms(kind)
    if len(synonyms) == count:
        return tuple(names[0] for names in synonyms)
    return tuple(f"{GENERIC_PREFIX[kind]}_{i}" for i in range(count))
