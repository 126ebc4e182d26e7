"""Adam for the trainer: torch's fused Adam kernel, called without ``torch.optim``.

The update is ``torch.optim.Adam(..., fused=True)``'s, step for step (a test compares the parameters
bit for bit). The reason for not using that class: creating any ``torch.optim`` optimizer imports
``torch._dynamo`` (its methods are wrapped to be skipped by the compiler), about 900 modules and 1-1.4 s
per process on the demo machine, which every training job and every fold worker paid. Where the fused
kernel is missing (an older torch, a device without it) the trainer falls back to ``torch.optim.Adam``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class FusedAdam:
    """Adam (L2 weight decay added to the gradient, as ``torch.optim.Adam``) with the fused kernel."""

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), betas, float(eps)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}  # one kernel call per group
        for i, p in enumerate(self.params):
            groups.setdefault((p.device, p.dtype), []).append(i)
        self.groups = list(groups.values())

    @staticmethod
    def available() -> bool:
        return hasattr(torch, "_fused_adam_")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for group in self.groups:
            todo = [i for i in group if self.params[i].grad is not None]
            if not todo:
                continue
            steps = [self.steps[i] for i in todo]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(
                [self.params[i] for i in todo],
                [self.params[i].grad for i in todo],
                [self.exp_avg[i] for i in todo],
                [self.exp_avg_sq[i] for i in todo],
                [],
                steps,
                lr=self.lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                weight_decay=self.weight_decay,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
