"""Sum fusion (OGM-GE's ``SumFusion``, Peng et al. CVPR 2022): logits = Σ_m fc_m(v^m).

Every modality embedding v^m gets its own linear head fc_m (with bias; an MLP head when
``head_hidden`` > 0) and the fused logits are the sum of the M heads' logits. The per-modality logits
fc_m(v^m) are reported as the modality heads (``modality_logits``; ``modality_mask`` = observed).
Missing modalities enter as their encoder applied to a zero input, like in every method, so fc_m of the
placeholder is part of the sum. The loss is the task's cross-entropy of the summed logits only.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


class SumFusion(FusionMethod):
    name: ClassVar[str] = "sum"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, spec: ModelSpec, cfg: MethodConfig):
        super().__init__(spec, cfg)
        self.heads = nn.ModuleDict(
            {m: make_head(cfg.d, spec.n_outputs, cfg.head_hidden, cfg.dropout) for m in spec.modalities}
        )

    def modality_heads(self, v: torch.Tensor) -> torch.Tensor:
        """(B, M, C): fc_m(v^m) for every modality."""
        return torch.stack([self.heads[m](v[:, i]) for i, m in enumerate(self.modalities)], 1)

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        per_modality = self.modality_heads(v)
        logits = per_modality.sum(1)
        out = ModelOutput(
            logits=logits, modality_logits=per_modality, modality_mask=batch.observed, embeddings=v
        )
        if batch.y is not None:
            ce = self.task.loss(logits, batch.y)
            out.loss = ce
            out.losses = {"ce": ce, "total": ce}
        return out
