"""The model of each task, built from a starting checkpoint.

VQA and GQA: `LxmertForQuestionAnswering` with an answer head for the run's answer list. From a pretraining
checkpoint (unc-nlp/lxmert-base-uncased) the encoders and the whole pretraining answer head are kept, and
the head's last layer is re-mapped from the 9,500 pretraining answers to the list by answer string, as
LXMERT's load_lxmert_qa does; from a fine-tuned checkpoint with another list, the same re-mapping from its
own answers. NLVR2: `LxmertForVisualReasoning`, the encoders of the checkpoint and a new head.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lxmert import LxmertConfig, LxmertForQuestionAnswering, LxmertForVisualReasoning


def model_answers(init: str) -> list[str] | None:
    """The answer list of a checkpoint (its config's labels, in label order), None when it names none."""
    config = LxmertConfig.from_pretrained(init)
    if not config.id2label:
        return None
    return [config.id2label[i] for i in range(len(config.id2label))]


def build_model(task: str, init: str, answers: Sequence[str] | None, feature_dim: int) -> tuple[nn.Module, int | None]:
    """(the model, how many answers kept their trained row: None for NLVR2). ValueError when the checkpoint
    reads features of another size than the stores hold."""
    if task == "nlvr2":
        # a pretraining or QA checkpoint has no NLVR2 head: it starts new (the loader warns, naming its tensors)
        model, carried = LxmertForVisualReasoning.from_pretrained(init, strict=False), None
    else:
        model = LxmertForQuestionAnswering.from_pretrained(init)
        own = model_answers_of(model)
        carried = len(answers) if own == list(answers) else model.remap_answer_head(list(answers))
    if model.config.visual_feat_dim != feature_dim:
        raise ValueError(
            f"the checkpoint {init} reads {model.config.visual_feat_dim}-d region features and the feature stores "
            f"hold {feature_dim}-d ones: extract them with the detector the checkpoint was trained on"
        )
    return model, carried


def model_answers_of(model: LxmertForQuestionAnswering) -> list[str] | None:
    """The answers of a loaded model's head, in row order (None without labels)."""
    labels = model.config.id2label
    if not labels or len(labels) != model.config.num_qa_labels:
        return None
    return [labels[i] for i in range(len(labels))]
