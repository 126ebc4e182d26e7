"""Sum fusion (the paper's §4.4 baseline, "summing the multimodal embeddings"): logits = head(Σ_m v^m).

The M modality embeddings v^m (each of size d) are added element-wise and one head (linear, or an MLP
when ``head_hidden`` > 0) reads the sum. Missing modalities enter as their encoder applied to a zero
input, like in every method, so their placeholder is part of the sum. The loss is the task's
cross-entropy of the head's output. (Summing per-modality linear heads instead, Σ_m fc_m(v^m), would be
exactly a linear head on the concatenation: the Concat baseline again.)
"""

from __future__ import annotations

from typing import ClassVar

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


class SumFusion(FusionMethod):
    name: ClassVar[str] = "sum"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, spec: ModelSpec, cfg: MethodConfig):
        super().__init__(spec, cfg)
        self.head = make_head(cfg.d, spec.n_outputs, cfg.head_hidden, cfg.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs  # (B, M, d)
        logits = self.head(v.sum(1))
        out = ModelOutput(logits=logits, embeddings=v)
        return self.with_task_loss(out, batch)
