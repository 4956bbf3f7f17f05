"""Makes the pictures of docs/visualization.md from the repository's test data (run from the repository root):

    python docs/images/make_pictures.py

Regions: the real bottom-up-attention (Caffe) regions of two COCO images from tests/fixtures/tsv, drawn on the
images with FeatureRecord.draw. Attention: an explanation figure for one of them from an LXMERT with random
weights (no trained weights can be had here), so it shows what the figure looks like, not what a trained model
looks at.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from extract.store.tsv import read_tsv
from lxmert import LxmertConfig, LxmertForQuestionAnswering, LxmertTokenizerFast
from pipelines.vqa import VisualQuestionAnsweringPipeline

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
OUTPUT = ROOT / "docs" / "images"
IMAGES = {"COCO_train2014_000000084002": "bedroom", "COCO_train2014_000000132417": "field"}


def main() -> None:
    records = {record.id: record for record in read_tsv(FIXTURES / "tsv" / "coco_train2014_obj36_caffe.tsv")}
    for image_id, name in IMAGES.items():
        image = FIXTURES / "images" / f"{image_id}.jpg"
        save(records[image_id].draw(image, top=12), f"regions-{name}.png")

    torch.manual_seed(0)
    config = LxmertConfig(
        hidden_size=128,
        num_attention_heads=4,
        intermediate_size=256,
        l_layers=2,
        x_layers=2,
        r_layers=1,
        num_qa_labels=3,
        id2label={0: "yes", 1: "no", 2: "bed"},
    )
    answerer = VisualQuestionAnsweringPipeline(LxmertForQuestionAnswering(config), LxmertTokenizerFast(), None)
    record = records["COCO_train2014_000000084002"]
    explanation = answerer(
        features=record.features, boxes=record.normalized_boxes, question="Is there a pillow on the bed?", explain=True
    )
    image = FIXTURES / "images" / "COCO_train2014_000000084002.jpg"
    save(explanation.draw(image), "attention-bedroom.png")
    save(explanation.draw(image, per_word=True), "attention-bedroom-words.png", width=800)


def save(picture: Image.Image, name: str, width: int | None = None) -> None:
    """A small PNG: scaled down to `width`, 128 colours (the docs' pictures stay below ~200 kB each)."""
    if width is not None and picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    picture.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(OUTPUT / name, optimize=True)


if __name__ == "__main__":
    main()
