"""LXMERT: config, tokenizers, models and heads, checkpoint loading."""

from lxmert.config import LxmertConfig
from lxmert.errors import CheckpointError
from lxmert.labels import load_answers, normalize_pretrain_answer
from lxmert.modeling import (
    LxmertForPreTraining,
    LxmertForQuestionAnswering,
    LxmertForVisualReasoning,
    LxmertModel,
    LxmertPreTrainedModel,
)
from lxmert.outputs import (
    LxmertForPreTrainingOutput,
    LxmertForQuestionAnsweringOutput,
    LxmertForVisualReasoningOutput,
    LxmertModelOutput,
)
from lxmert.tokenization import BatchEncoding, LxmertTokenizer, LxmertTokenizerFast

__all__ = [
    "BatchEncoding",
    "CheckpointError",
    "LxmertConfig",
    "LxmertForPreTraining",
    "LxmertForPreTrainingOutput",
    "LxmertForQuestionAnswering",
    "LxmertForQuestionAnsweringOutput",
    "LxmertForVisualReasoning",
    "LxmertForVisualReasoningOutput",
    "LxmertModel",
    "LxmertModelOutput",
    "LxmertPreTrainedModel",
    "LxmertTokenizer",
    "LxmertTokenizerFast",
    "load_answers",
    "normalize_pretrain_answer",
]
