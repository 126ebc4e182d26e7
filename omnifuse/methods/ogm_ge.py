"""OGM-GE: on-the-fly gradient modulation with generalisation enhancement (Peng et al., "Balanced
Multimodal Learning via On-the-fly Gradient Modulation", CVPR 2022; code: GeWu-Lab/OGM-GE_CVPR2022).

The published method is for **two** modalities; the M-modality form below is our extension (for M = 2
it is exactly the published rule).

* Fusion: concatenation and one linear layer, logits = W [v^1; …; v^M] + b (the published ``concat``
  fusion). Its weight is split per modality, W = [W_1 … W_M], and the unimodal logits are
  f^m = W_m v^m + b / M (published: b / 2), reported as the modality heads (``modality_logits``). The
  loss is the task's cross-entropy of the fused logits only.
* Scores, per training batch: s^m = mean over the batch samples that observe m of the probability f^m
  gives to the true label (softmax of the true class for multi-class; the sigmoid probability of the
  true label for binary; the mean of that over the labels for multi-label). The published score is
  the sum over the batch; when every sample has every modality (the paired cohort) the mean gives the
  same ratios, and with natural missingness it does not count a modality's absent samples.
* Discrepancy ratio ρ^m = s^m / mean_{n≠m} s^n (published, M = 2: ρ^a = s^a / s^v), over the modalities
  observed in the batch; coefficient k^m = 1 − tanh(α · ρ^m) if ρ^m > 1 else 1 (eq. 10). A modality
  with no observed sample in the batch, or no other modality to compare with, gets k^m = 1.
* After ``loss.backward()`` and before the optimizer step (``after_backward``), every *non-bias* weight
  gradient of modality m's encoder (parameters with two or more dimensions: Linear and LSTM weight
  matrices; the published code modulates the 4-D convolution weights of the two ResNets) is replaced
  by k^m · g + ε with ε ~ N(0, (std(g) + 1e-8)²) elementwise, std(g) the standard deviation of the
  *unscaled* gradient tensor (GE; ``ge: false`` gives plain OGM, k^m · g). As in the published code the
  noise is added to every modality's modulated weights, the dominant one and the others (k = 1) alike.
  The noise is drawn from the trainer's per-fold seeded generator (reproducible on CPU). The fusion
  layer is never modulated.
* Active in epochs ``start_epoch`` … ``end_epoch`` (1-based, inclusive; published defaults: epochs
  0 … 50 of 100, 0-based); outside it nothing is modulated and no noise is added.
* α = 0.1 (``alpha``): the published default setting (``--alpha 0.1``; the authors recommend 0.1 for
  VGGSound and 0.8 for CREMA-D, i.e. α depends on the dataset's modality discrepancy).

History per epoch: the mean over batches of k^m (``ogm_k_<m>``), ρ^m (``ogm_rho_<m>``) and s^m
(``ogm_score_<m>``) while modulation is active.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.task import Task

NOISE_EPS = 1e-8  # added to the gradient std, as in the published code


@dataclass
class OGMGEConfig(MethodConfig):
    alpha: float = 0.1  # modulation strength α in k = 1 − tanh(α ρ)
    start_epoch: int = 1  # first epoch (1-based) with modulation
    end_epoch: int = 50  # last epoch (inclusive) with modulation
    ge: bool = True  # generalisation enhancement: Gaussian noise with the unscaled gradient's std

    def validate(self) -> None:
        super().validate()
        if self.head_hidden != 0:
            raise ValueError(
                "ogm_ge splits the weight of one linear fusion layer into per-modality parts; "
                f"head_hidden must be 0, got {self.head_hidden}"
            )
        if self.alpha < 0:
            raise ValueError(f"ogm_ge.alpha must be >= 0, got {self.alpha}")
        if self.start_epoch > self.end_epoch:
            raise ValueError(f"ogm_ge.start_epoch ({self.start_epoch}) is after end_epoch ({self.end_epoch})")


def modality_scores(
    task: Task, modality_logits: torch.Tensor, y: torch.Tensor, observed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """s^m (M,) = mean over samples observing m of the probability of the true label (mean over
    labels for multi-label), and which modalities are observed in the batch (M,) bool."""
    m = modality_logits.shape[1]
    p = torch.stack([task.prob_true(modality_logits[:, i], y).mean(-1) for i in range(m)], 1)  # (B, M)
    w = observed.to(p.dtype)
    count = w.sum(0)
    return (p * w).sum(0) / count.clamp_min(1.0), count > 0


def ogm_coefficients(
    scores: torch.Tensor, valid: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(k, ρ), each (M,): ρ^m = s^m / mean_{n≠m, valid} s^n; k^m = 1 − tanh(α ρ^m) if ρ^m > 1 else 1.
    Modalities that are not valid, or have no valid other, get k = 1 and ρ = NaN."""
    m = scores.shape[0]
    k = torch.ones(m, dtype=scores.dtype)
    rho = torch.full((m,), float("nan"), dtype=scores.dtype)
    for i in range(m):
        others = [j for j in range(m) if j != i and bool(valid[j])]
        if not bool(valid[i]) or not others:
            continue
        ref = scores[others].mean().clamp_min(1e-12)
        rho[i] = scores[i] / ref
        if rho[i] > 1:
            k[i] = 1 - math.tanh(alpha * float(rho[i]))
    return k, rho


def is_modulated(p: nn.Parameter) -> bool:
    """Non-bias weights: parameters with two or more dimensions."""
    return p.dim() >= 2


@torch.no_grad()
def modulate_gradients(
    params: list[list[nn.Parameter]], k: torch.Tensor, ge: bool, generator: torch.Generator | None
) -> None:
    """g ← k^m · g (+ N(0, (std(g) + 1e-8)²) when ``ge``) for every non-bias weight of modality m."""
    for i, group in enumerate(params):
        coeff = float(k[i])
        for p in group:
            if p.grad is None or not is_modulated(p):
                continue
            g = p.grad
            std = float(g.std()) if g.numel() > 1 else 0.0
            if ge:
                noise = torch.randn(g.shape, generator=generator, dtype=torch.float32)
                noise = noise.to(device=g.device, dtype=g.dtype) * (std + NOISE_EPS)
            g.mul_(coeff)
            if ge:
                g.add_(noise)


class OGMGE(FusionMethod):
    name: ClassVar[str] = "ogm_ge"
    Config: ClassVar[type[MethodConfig]] = OGMGEConfig
    cfg: OGMGEConfig

    def __init__(self, spec: ModelSpec, cfg: OGMGEConfig):
        super().__init__(spec, cfg)
        self.fusion = nn.Linear(spec.n_modalities * cfg.d, spec.n_outputs)
        self._stats: dict[str, list[float]] = {}

    def unimodal_logits(self, v: torch.Tensor) -> torch.Tensor:
        """(B, M, C): f^m = W_m v^m + b / M, from the split fusion weight."""
        m, d = v.shape[1], v.shape[2]
        w = self.fusion.weight.view(-1, m, d)  # (C, M, d): W_m = weight[:, m·d:(m+1)·d]
        return torch.einsum("bmd,cmd->bmc", v, w) + self.fusion.bias / m

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        logits = self.fusion(v.flatten(1))
        out = ModelOutput(
            logits=logits,
            modality_logits=self.unimodal_logits(v),
            modality_mask=batch.observed,
            embeddings=v,
        )
        return self.with_task_loss(out, batch)

    def active(self, epoch: int) -> bool:
        return self.cfg.start_epoch <= epoch <= self.cfg.end_epoch

    def after_backward(self, batch: Batch, output: ModelOutput, ctx: Any) -> None:
        if batch.y is None or output.modality_logits is None or not self.active(ctx.epoch):
            return
        scores, valid = modality_scores(self.task, output.modality_logits.detach(), batch.y, batch.observed)
        scores, valid = scores.double().cpu(), valid.cpu()
        k, rho = ogm_coefficients(scores, valid, self.cfg.alpha)
        params = [self.encoder_parameters(m) for m in self.modalities]
        modulate_gradients(params, k, self.cfg.ge, ctx.generator)
        for i, m in enumerate(self.modalities):
            self._stats.setdefault(f"ogm_k_{m}", []).append(float(k[i]))
            if math.isfinite(float(rho[i])):
                self._stats.setdefault(f"ogm_rho_{m}", []).append(float(rho[i]))
            if bool(valid[i]):
                self._stats.setdefault(f"ogm_score_{m}", []).append(float(scores[i]))

    def on_epoch_start(self, ctx: Any) -> None:
        self._stats = {}

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        return {key: sum(vals) / len(vals) for key, vals in sorted(self._stats.items()) if vals}
