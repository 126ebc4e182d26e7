"""SE-Gate: squeeze-and-excitation across modalities (after Hu et al., "Squeeze-and-Excitation
Networks", CVPR 2018, with the modalities in the role of the channels).

With v = [v^1; …; v^M] (missing modalities: the encoder on a zero input, like every method):

    e = σ(W2 · ReLU(W1 · v)) ∈ (0, 1)^M,   W1: M·d → M·d / r,   W2: M·d / r → M
    fused = [e_1 v^1; …; e_M v^M] → head (linear, or an MLP when ``head_hidden`` > 0)

``reduction`` r (default 16, SENet's default) sets the bottleneck width max(1, M·d // r); W1 and W2
have biases. One gate per modality and sample; the loss is the task's cross-entropy of the head. The
mean gate of every modality over the epoch's training samples is recorded in the history
(``gate_<m>``), and the batch's gates are in ``ModelOutput.extras["gates"]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


@dataclass
class SEGateConfig(MethodConfig):
    reduction: int = 16  # SE bottleneck: M·d → M·d // reduction → M gates

    def validate(self) -> None:
        super().validate()
        if self.reduction < 1:
            raise ValueError(f"se_gate.reduction must be >= 1, got {self.reduction}")


class SEGate(FusionMethod):
    name: ClassVar[str] = "se_gate"
    Config: ClassVar[type[MethodConfig]] = SEGateConfig
    cfg: SEGateConfig

    def __init__(self, spec: ModelSpec, cfg: SEGateConfig):
        super().__init__(spec, cfg)
        width = spec.n_modalities * cfg.d
        self.squeeze = nn.Sequential(
            nn.Linear(width, max(1, width // cfg.reduction)),
            nn.ReLU(),
            nn.Linear(max(1, width // cfg.reduction), spec.n_modalities),
            nn.Sigmoid(),
        )
        self.head = make_head(width, spec.n_outputs, cfg.head_hidden, cfg.dropout)
        self._gate_sum = torch.zeros(spec.n_modalities, dtype=torch.float64)
        self._gate_n = 0

    def gates(self, v: torch.Tensor) -> torch.Tensor:
        """(B, M) gates e from the embeddings v (B, M, d)."""
        return self.squeeze(v.flatten(1))

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        e = self.gates(v)
        logits = self.head((v * e.unsqueeze(-1)).flatten(1))
        out = ModelOutput(logits=logits, embeddings=v, extras={"gates": e})
        if batch.y is not None and self.training:
            self._gate_sum += e.detach().double().sum(0).cpu()
            self._gate_n += len(batch)
        return self.with_task_loss(out, batch)

    def on_epoch_start(self, ctx: Any) -> None:
        self._gate_sum.zero_()
        self._gate_n = 0

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        if not self._gate_n:
            return {}
        mean = self._gate_sum / self._gate_n
        return {f"gate_{m}": float(mean[i]) for i, m in enumerate(self.modalities)}
