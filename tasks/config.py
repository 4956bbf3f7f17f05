"""The settings of a fine-tuning run (`TrainConfig`) and their defaults: LXMERT's recipe. Plain Python, so
the command line builds its --help from it without loading torch."""

from __future__ import annotations

import os
from dataclasses import dataclass

# Per task: the learning rate of LXMERT's scripts.
DEFAULT_LR = {"vqa": 5e-5, "gqa": 1e-5, "nlvr2": 5e-5}
DEFAULT_INIT = "unc-nlp/lxmert-base-uncased"
TASKS = ("vqa", "gqa", "nlvr2")
OPTIMIZERS = ("bertadam", "adamw")  # tasks.optim
STATE_NAME = "state.pt"
RUN_NAME = "run.json"
METRICS_NAME = "metrics.jsonl"
# What a run writes into its output folder (an --overwrite removes these and nothing else).
RUN_FILES = (RUN_NAME, METRICS_NAME, STATE_NAME, "best", "last")
# Settings a resumed run must share with the run it continues.
RESUME_KEYS = (
    "task",
    "train",
    "train_dataset",
    "train_split",
    "question_column",
    "image_column",
    "answers_column",
    "question_id_column",
    "features",
    "init",
    "answers",
    "batch_size",
    "grad_accum",
    "epochs",
    "seed",
    "max_length",
)


@dataclass
class TrainConfig:
    """Every setting of a run (each one is also an `lxmert train` flag of the same name)."""

    task: str  # "vqa", "gqa" or "nlvr2"
    train: list[str]  # data files (tasks.data formats); may be empty when train_dataset is given
    features: list[str]  # feature stores holding the images of the train and valid data
    output: str  # the run's folder
    valid: str | None = None  # a data file scored after every epoch; the best epoch goes to best/
    # Questions of a `datasets` dataset (vqa, gqa): a hub name or a save_to_disk folder, and its split (needed
    # when it has several), read by column (tasks.data.read_hf_dataset).
    train_dataset: str | None = None
    train_split: str | None = None
    valid_dataset: str | None = None
    valid_split: str | None = None
    question_column: str = "question"
    image_column: str = "image_id"  # values: the store ids
    answers_column: str = "answers"  # annotator answers, one answer, or answer -> score
    question_id_column: str | None = None  # default: the row index
    init: str = DEFAULT_INIT  # checkpoint to start from: pretraining (head re-mapped) or fine-tuned
    answers: str | None = None  # JSON answer list (index = label); default: the init's, else the training data's
    epochs: int = 4
    batch_size: int = 32  # per optimizer step, over all ranks and accumulation steps
    grad_accum: int = 1  # batches per optimizer step
    lr: float | None = None  # default: DEFAULT_LR[task]
    optimizer: str = "bertadam"  # or "adamw" (tasks.optim)
    weight_decay: float = 0.01
    warmup: float = 0.1  # share of the optimizer steps
    max_grad_norm: float = 5.0
    max_length: int = 20  # tokens per text, as LXMERT's scripts
    seed: int = 9595  # LXMERT's default seed
    device: str | None = None  # default: CUDA when available (cuda:LOCAL_RANK under torchrun)
    bf16: bool | None = None  # autocast to bfloat16; default: on a GPU only
    compile: bool = False  # torch.compile the model
    num_workers: int = 0  # DataLoader processes reading features
    save_steps: int = 0  # also write the training state every N optimizer steps (0: at epoch ends only)
    log_steps: int = 20  # a metrics.jsonl line every N optimizer steps
    valid_batch_size: int = 256
    strict: bool = False  # records whose images are missing from the stores are an error, not skipped
    resume: bool = False
    overwrite: bool = False
    progress: bool | None = None  # the progress bar (None: when stderr is a terminal)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS)}")
        if isinstance(self.train, (str, os.PathLike)):
            self.train = [self.train]
        if isinstance(self.features, (str, os.PathLike)):
            self.features = [self.features]
        self.train = [os.fspath(path) for path in self.train]
        self.features = [os.fspath(path) for path in self.features]
        if self.lr is None:
            self.lr = DEFAULT_LR[self.task]
        if self.task == "nlvr2" and (self.train_dataset or self.valid_dataset):
            raise ValueError("train_dataset / valid_dataset hold questions (vqa, gqa); NLVR2 reads data files")
        for which in ("train", "valid"):
            if getattr(self, f"{which}_split") is not None and getattr(self, f"{which}_dataset") is None:
                raise ValueError(f"{which}_split={getattr(self, f'{which}_split')!r} goes with {which}_dataset")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        checks = (
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (self.lr > 0, "lr", "> 0"),
            (0 <= self.warmup < 1, "warmup", "in [0, 1)"),
            (self.max_grad_norm > 0, "max_grad_norm", "> 0"),
            (self.max_length >= 3, "max_length", ">= 3 (two special tokens and a word)"),
            (self.save_steps >= 0, "save_steps", ">= 0"),
            (self.log_steps >= 1, "log_steps", ">= 1"),
            (self.num_workers >= 0, "num_workers", ">= 0"),
            (self.valid_batch_size >= 1, "valid_batch_size", ">= 1"),
            (not (self.resume and self.overwrite), "resume", "not together with overwrite"),
        )
        for ok, name, expected in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected {expected}")
