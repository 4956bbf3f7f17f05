"""Fine-tuning and evaluation of LXMERT on VQA, GQA and NLVR2 from feature stores.

    from tasks import TrainConfig, train, evaluate_vqa
    train(TrainConfig("vqa", train=["train.json"], valid="minival.json", features=["train2014.h5"],
                      output="runs/vqa"))
    evaluate_vqa("minival_predict.json", "v2_mscoco_val2014_annotations.json")  # {"overall": ..., ...}

data files (tasks.data) + feature stores (tasks.features) -> examples (tasks.examples) -> the training loop
(tasks.training, with tasks.optim and tasks.models) -> best/ and last/ checkpoints -> predictions and the official
metrics (tasks.evaluation, tasks.metrics). It builds on extract's store and on lxmert; nothing below it imports
it. docs/training.md describes formats, recipe, starting points, resume and scale.

Names are imported from their modules on first use, so `import tasks` (and `lxmert --help`) loads no torch.
"""

import importlib

# public name -> the module (below tasks) that defines it
_EXPORTS = {
    "TrainConfig": "config",
    "Question": "data",
    "Statement": "data",
    "DataFormatError": "data",
    "read_answer_list": "data",
    "read_task_data": "data",
    "RegionFeatures": "features",
    "evaluate": "evaluation",
    "evaluate_vqa": "metrics",
    "evaluate_gqa": "metrics",
    "evaluate_nlvr2": "metrics",
    "evaluate_lxmert": "metrics",
    "BertAdam": "optim",
    "TrainSummary": "training",
    "TrainingError": "training",
    "train": "training",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
