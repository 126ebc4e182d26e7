"""Unimodal baseline (Table 2's uni-modality rows): one modality's encoder and a head on its embedding.

The run's combination must be exactly one modality (``--combo ehr``, ``--combo cxr``, ...; run it once
per modality); any other spec is refused. The encoder is the shared one of that modality
(:mod:`omnifuse.nn.encoders`), the loss the task's cross-entropy (per-label BCE for multi-label). The
head's logits are also reported as the modality head (``modality_logits``), so that ``omnifuse
predict`` shows them in the per-modality view.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head


class Unimodal(FusionMethod):
    name: ClassVar[str] = "unimodal"
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, spec: ModelSpec, cfg: MethodConfig):
        if len(spec.inputs) != 1:
            raise ValueError(
                f"method unimodal takes exactly one input modality, got the combination "
                f"{'+'.join(spec.inputs)}; run it once per modality (e.g. --combo {spec.inputs[0]})"
            )
        super().__init__(spec, cfg)
        self.index = spec.modalities.index(spec.inputs[0])
        self.head = make_head(cfg.d, spec.n_outputs, cfg.head_hidden, cfg.dropout)

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs[:, self.index]
        logits = self.head(v)
        heads = logits.new_zeros(len(batch), len(self.modalities), logits.shape[-1])
        heads[:, self.index] = logits.detach()
        head_mask = torch.zeros_like(batch.observed)
        head_mask[:, self.index] = batch.observed[:, self.index]
        out = ModelOutput(
            logits=logits, modality_logits=heads, modality_mask=head_mask, embeddings=v.unsqueeze(1)
        )
        return self.with_task_loss(out, batch)
