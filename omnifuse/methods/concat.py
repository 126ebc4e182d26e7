"""Concatenate (Table 3 "Concat"): one head on [v^1; ...; v^M].

Missing modalities enter as their encoder applied to a zero input (like every method); the loss is the
task's cross-entropy (per-label BCE for multi-label) of the head.
"""

from __future__ import annotations

from typing import ClassVar

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


class Concat(FusionMethod):
    name: ClassVar[str] = "concat"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, spec: ModelSpec, cfg: MethodConfig):
        super().__init__(spec, cfg)
        self.head = make_head(spec.n_modalities * cfg.d, spec.n_outputs, cfg.head_hidden, cfg.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        logits = self.head(v.flatten(1))
        out = ModelOutput(logits=logits, embeddings=v)
        return self.with_task_loss(out, batch)
