"""LXMERT: config, tokenizers, models and heads, checkpoint loading."""

from lxmert.checkpoints import CheckpointError
from lxmert.config import LxmertConfig
from lxmert.labels import load_answers
from lxmert.modeling import (
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertModel,
    LxmertPreTrainedModel,
)
from lxmert.outputs import LxmertForPreTrainingOutput, LxmertForQuestionAnsweringOutput, LxmertModelOutput

__all__ = [
    "CheckpointError",
    "LxmertConfig",
    "LxmertForPreTraining",
    "LxmertForPreTrainingOutput",
    "LxmertForQuestionAnswering",
    "LxmertForQuestionAnsweringOutput",
    "LxmertModel",
    "LxmertModelOutput",
    "LxmertPreTrainedModel",
    "load_answers",
]
