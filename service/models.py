"""The models a server runs, and the two stage functions the device worker calls with batches of works:
`detect` (decoded images -> RegionFeatures, through the detector) and `answer` (regions and texts -> answers
or match scores, through the pipelines with `regions=`: equal to the pipelines' one-by-one answers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from extract.extractor import RegionFeatureExtractor, RegionFeatures
from extract.store import FeatureStore
from pipelines.base import DEFAULT_DOWNLOAD_TIMEOUT, ImageReader
from pipelines.cli import load_pipeline
from pipelines.matching import ImageTextMatchingPipeline
from pipelines.vqa import VisualQuestionAnsweringPipeline

from .batching import Work
from .config import ServeConfig


@dataclass
class ServedModels:
    """The pipelines of the served tasks (one detector, shared) and the feature store, if any."""

    vqa: VisualQuestionAnsweringPipeline
    gqa: VisualQuestionAnsweringPipeline | None = None
    match: ImageTextMatchingPipeline | None = None
    store: FeatureStore | None = None

    @property
    def reader(self) -> ImageReader:
        return self.vqa.reader

    @property
    def extractor(self) -> RegionFeatureExtractor:
        return self.vqa.reader.extractor

    def pipeline(self, task: str) -> VisualQuestionAnsweringPipeline | ImageTextMatchingPipeline | None:
        """The pipeline of "vqa", "gqa" or "match"; None when that task is not served."""
        return {"vqa": self.vqa, "gqa": self.gqa, "match": self.match}[task]

    def detect(self, works: list[Work], *, batch_size: int) -> list[RegionFeatures]:
        """The regions of each work's image: one extractor call per box count, batch_size images per pass."""
        found: list[Any] = [None] * len(works)
        for num_boxes, indices in _groups(works, lambda work: work.num_boxes).items():
            images = [works[i].image for i in indices]
            regions = self.extractor(images, num_boxes=num_boxes, batch_size=batch_size)
            for i, image_regions in zip(indices, regions, strict=True):
                # Without the pixels: the cache keeps regions, not pictures.
                found[i] = dataclasses.replace(image_regions, source=None)
        return found

    def answer(self, works: list[Work], *, batch_size: int) -> list[list[Any]]:
        """Per work, a result per text: the top answers ([{"score", "answer"}]) or with explain an Explanation,
        or for "match" {"score", "match"}. One pipeline call per (task, explain, attention layer), batch_size
        pairs per LXMERT pass; each work's answers cut to its own top_k."""
        results: list[Any] = [None] * len(works)
        for (task, explain, layer), indices in _groups(
            works, lambda work: (work.task, work.explain, work.attention_layer)
        ).items():
            pipeline = self.pipeline(task)
            regions = [works[i].regions for i in indices for _ in works[i].texts]
            texts = [text for i in indices for text in works[i].texts]
            if task == "match":
                flat = pipeline(regions=regions, text=texts, batch_size=batch_size)
            else:
                top_k = max(works[i].top_k for i in indices)
                flat = pipeline(
                    regions=regions,
                    question=texts,
                    top_k=top_k,
                    batch_size=batch_size,
                    explain=explain,
                    attention_layer=layer,
                )
            start = 0
            for i in indices:
                count = len(works[i].texts)
                results[i] = [_cut(result, works[i].top_k) for result in flat[start : start + count]]
                start += count
        return results

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def load_models(config: ServeConfig) -> ServedModels:
    """The pipelines `config` asks for, on its device, sharing one detector; CommandError (pipelines.cli) when the
    hub is unreachable and the cache lacks a checkpoint. URL downloads keep to the upload limit and the request
    timeout."""
    common = {"device": config.device, "allow_network": config.allow_network, "batch_size": config.max_batch_size}
    vqa = load_pipeline(
        "vqa",
        model=config.model,
        detector=config.detector,
        max_image_pixels=config.max_image_pixels,
        max_download_bytes=config.max_upload_bytes,
        download_timeout=min(DEFAULT_DOWNLOAD_TIMEOUT, config.request_timeout),
        **common,
    )
    extractor = vqa.reader.extractor
    gqa = load_pipeline("gqa", model=config.gqa_model, detector=extractor, **common) if config.gqa_model else None
    match = None
    if config.match_model:
        match = load_pipeline("image-text-matching", model=config.match_model, detector=extractor, **common)
    store = None
    if config.store:
        store = FeatureStore(config.store)
        width, wanted = store.metadata.feature_dim, vqa.model.config.visual_feat_dim
        if width != wanted:
            store.close()
            raise ValueError(
                f"--store {config.store} holds {width}-d features but the LXMERT model reads {wanted}-d ones "
                "(visual_feat_dim): use a store made with the served detector"
            )
    return ServedModels(vqa, gqa, match, store)


def _groups(works: list[Work], key) -> dict[Hashable, list[int]]:
    groups: dict[Hashable, list[int]] = {}
    for i, work in enumerate(works):
        groups.setdefault(key(work), []).append(i)
    return groups


def _cut(result: Any, top_k: int) -> Any:
    if isinstance(result, list):  # answers
        return result[:top_k]
    if hasattr(result, "answers"):  # an Explanation
        return dataclasses.replace(result, answers=result.answers[:top_k])
    return result  # a match score
