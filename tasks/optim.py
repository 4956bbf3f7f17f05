"""The fine-tuning optimizers and learning-rate schedule of LXMERT's recipe.

- `BertAdam` is the optimizer LXMERT's fine-tuning code uses (src/lxrt/optimization.py): Adam WITHOUT bias
  correction, epsilon 1e-6, and decoupled weight decay 0.01 added to the update. LXMERT's task scripts
  hand it every parameter, so biases and LayerNorm weights decay too; `parameter_groups(..., exclude=False)`
  does the same here. Its gradient clipping is done outside (clip_grad_norm_ at 5), as theirs is.
- `torch.optim.AdamW` (bias-corrected, epsilon 1e-8; biases and LayerNorm weights not decayed) is the
  usual modern choice.
- `warmup_linear`: the learning rate rises linearly over the first `warmup` share of the optimizer steps
  and then falls linearly to 0 at the last one; the step-`k` rate is `lr * warmup_linear(k / total)`,
  so the first step has rate 0, as in LXMERT's BertAdam.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .config import OPTIMIZERS


class BertAdam(torch.optim.Optimizer):
    """Adam without bias correction, with decoupled weight decay (LXMERT's fine-tuning optimizer)."""

    def __init__(
        self,
        params: Iterable,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"BertAdam: invalid lr {lr}, betas {betas}, eps {eps} or weight_decay {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("BertAdam does not take sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                update = exp_avg / (exp_avg_sq.sqrt() + group["eps"])
                if group["weight_decay"] > 0:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-group["lr"])
        return loss


def parameter_groups(model: nn.Module, weight_decay: float, *, exclude: bool) -> list[dict]:
    """The model's trainable parameters in optimizer groups: with `exclude`, biases and LayerNorm weights
    get no weight decay (one group each way); without, one group decays everything (LXMERT's code)."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not exclude:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    no_decay = [p for name, p in params if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name]
    decay = [p for name, p in params if not (name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """ "bertadam" (LXMERT's: no bias correction, every parameter decayed) or "adamw"."""
    if name == "bertadam":
        return BertAdam(parameter_groups(model, weight_decay, exclude=False), lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameter_groups(model, weight_decay, exclude=True), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}: expected one of {', '.join(OPTIMIZERS)}")


def warmup_linear(progress: float, warmup: float) -> float:
    """The learning-rate factor at `progress` (optimizer steps done / total): up to 1 over `warmup`, then
    down to 0 at the end."""
    if progress < warmup:
        return progress / warmup
    return max((progress - 1.0) / (warmup - 1.0), 0.0)


def build_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_linear` over `total_steps` optimizer steps (call `step()` after each optimizer step)."""
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup must be a share of the steps in [0, 1), got {warmup}")
    total = max(total_steps, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_linear(step / total, warmup))
