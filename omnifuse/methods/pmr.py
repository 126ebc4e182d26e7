"""PMR: prototypical modal rebalance (Fan et al., "PMR: Prototypical Modal Rebalance for Multimodal
Learning", CVPR 2023; code: fanyunfeng-bit/Modal-Imbalance-PMR).

The published method is for **two** modalities; the M-modality form below is our extension (for M = 2
it reduces to the published rule).

* Fusion: concatenation and a head on [v^1; …; v^M] (the published ``concat`` fusion); the prediction
  is the head's. Missing modalities enter the head as their encoder on a zero input (like every method)
  but are excluded from everything prototypical below.
* Prototypes: c^m_k = mean of the embeddings z^m = v^m of the training samples of class k that observe
  m, computed in eval mode without gradient over a random subset of the training batches
  (``proto_fraction`` of them, at least one; published: a tenth), before every epoch (the first time
  from the initial model, as published) and blended with momentum afterwards:
  c ← (1 − ``momentum``) · c_new + ``momentum`` · c_old (published ``momentum_coef`` 0.2). A class
  absent from the subset keeps its previous prototype (the first time: the subset's mean embedding).
* Prototype logits: P^m_k = −‖z^m − c^m_k‖ (Euclidean distance); the prototypical cross-entropy
  L_PCE^m = CE(P^m, y) over the batch samples that observe m.
* Multi-label and binary tasks: prototypes per label and class, c^m_{j,0} and c^m_{j,1} for every
  label j (binary: one label); P^m_j is a two-class problem per label; L_PCE^m is the mean of the
  per-label CEs and the probability of the true class is averaged over the labels. Multi-class: one
  prototype per class.
* Scores and coefficients, per training batch (no gradient): s^m = mean over samples observing m of
  softmax(P^m)[y] (published: the sum over the batch; same ratios on the paired cohort); the dominant
  modality is argmax_m s^m; every other modality gets the coefficient β^m = α · clip(s_max / s^m − 1,
  0, 1) (for M = 2 this is α · clip(ρ − 1, 0, 1) with ρ the published ratio of the two scores); the
  dominant one gets 0.
* Prototype entropy regularisation (first ``er_epochs`` = E_r epochs): the dominant modality's
  prototype predictions are pushed towards higher entropy, L_ER = −H(softmax(P^dom)) (mean over its
  observed samples and labels), weighted by μ (``mu``), to slow the dominant modality down early.
* Loss: L = CE(head) + Σ_m β^m · L_PCE^m + μ · L_ER; defaults α = 1, μ = 0.01, E_r = 10.

History per epoch: the mean over batches of β^m (``pmr_coef_<m>``) and s^m (``pmr_score_<m>``), and the
share of batches in which each modality was dominant (``pmr_dominant_<m>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import make_head
from omnifuse.nn.task import Task


@dataclass
class PMRConfig(MethodConfig):
    alpha: float = 1.0  # α: scale of the prototypical CE coefficients of the non-dominant modalities
    mu: float = 0.01  # μ: weight of the dominant modality's prototype entropy regularisation
    er_epochs: int = 10  # E_r: entropy regularisation in epochs 1..E_r
    momentum: float = 0.2  # prototype refresh: c = (1 − momentum)·c_new + momentum·c_old
    proto_fraction: float = 0.1  # fraction of the training batches used to compute the prototypes

    def validate(self) -> None:
        super().validate()
        if self.alpha < 0 or self.mu < 0:
            raise ValueError(f"pmr.alpha and pmr.mu must be >= 0, got {self.alpha}, {self.mu}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"pmr.momentum must be in [0, 1), got {self.momentum}")
        if not 0.0 < self.proto_fraction <= 1.0:
            raise ValueError(f"pmr.proto_fraction must be in (0, 1], got {self.proto_fraction}")


def label_grid(task: Task, y: torch.Tensor) -> torch.Tensor:
    """(B, W) long class index per (sample, label): the class for multi-class (W = 1), 0/1 per label
    for binary / multi-label (W = C)."""
    return y.view(-1, 1).long() if task.multiclass else (y > 0.5).long()


def n_proto_classes(task: Task) -> int:
    return task.n_outputs if task.multiclass else 2


def class_means(z: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per label j and class k the mean of z over samples with labels[:, j] == k.

    ``z`` (N, d), ``labels`` (N, W) → (means (W, K, d), counts (W, K)); means are 0 where count is 0."""
    onehot = torch.nn.functional.one_hot(labels, n_classes).to(z.dtype)  # (N, W, K)
    sums = torch.einsum("nwk,nd->wkd", onehot, z)
    counts = onehot.sum(0)
    return sums / counts.clamp_min(1.0).unsqueeze(-1), counts


def prototype_logits(z: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """P (B, W, K) = −‖z_b − c_{w,k}‖ for ``z`` (B, d) and prototypes (W, K, d)."""
    diff = z[:, None, None, :] - protos.unsqueeze(0)
    return -diff.pow(2).sum(-1).clamp_min(1e-12).sqrt()


def pmr_coefficients(scores: torch.Tensor, valid: torch.Tensor, alpha: float) -> tuple[torch.Tensor, int]:
    """(β (M,), dominant index): β^m = α · clip(s_max / s^m − 1, 0, 1) for valid non-dominant m, else 0.
    The dominant modality is the valid one with the largest score (-1 when none is valid)."""
    beta = torch.zeros_like(scores)
    if not bool(valid.any()):
        return beta, -1
    masked = torch.where(valid, scores, torch.full_like(scores, -math.inf))
    dom = int(masked.argmax())
    s_max = scores[dom]
    for i in range(scores.shape[0]):
        if i != dom and bool(valid[i]):
            beta[i] = alpha * (s_max / scores[i].clamp_min(1e-12) - 1).clamp(0.0, 1.0)
    return beta, dom


class PMR(FusionMethod):
    name: ClassVar[str] = "pmr"
    Config: ClassVar[type[MethodConfig]] = PMRConfig
    cfg: PMRConfig

    def __init__(self, spec: ModelSpec, cfg: PMRConfig):
        super().__init__(spec, cfg)
        self.head = make_head(spec.n_modalities * cfg.d, spec.n_outputs, cfg.head_hidden, cfg.dropout)
        shape = (spec.n_modalities, self.task.width, n_proto_classes(self.task), cfg.d)
        self.register_buffer("prototypes", torch.zeros(shape), persistent=False)
        self.has_prototypes = False
        self.epoch = 0
        self._stats: dict[str, list[float]] = {}

    # ----- prototypes -----
    @torch.no_grad()
    def compute_prototypes(
        self, z: torch.Tensor, observed: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """New prototypes (M, W, K, d) from embeddings ``z`` (N, M, d) with momentum applied."""
        new = self.prototypes.clone()
        k = n_proto_classes(self.task)
        for i in range(len(self.modalities)):
            rows = observed[:, i]
            if not bool(rows.any()):
                continue
            means, counts = class_means(z[rows, i], labels[rows], k)
            fallback = self.prototypes[i] if self.has_prototypes else z[rows, i].mean(0).expand_as(means)
            fresh = torch.where((counts > 0).unsqueeze(-1), means, fallback)
            if self.has_prototypes and self.cfg.momentum > 0:
                fresh = (1 - self.cfg.momentum) * fresh + self.cfg.momentum * self.prototypes[i]
            new[i] = fresh
        return new

    @torch.no_grad()
    def refresh_prototypes(self, ctx: Any) -> None:
        """Class means over a random ``proto_fraction`` of the training batches (eval mode)."""
        was_training = self.training
        self.eval()
        n = len(ctx.train_idx)
        size = ctx.cfg.batch_size
        n_batches = max(1, math.ceil(self.cfg.proto_fraction * math.ceil(n / size)))
        rows = ctx.train_idx[torch.randperm(n, generator=ctx.generator)[: n_batches * size]]
        zs, obs, labels = [], [], []
        for batch in ctx.batches(rows, targets=False, labels=True, batch_size=size):
            zs.append(self.encoders(batch.x, batch.mask))
            obs.append(batch.observed)
            labels.append(label_grid(self.task, batch.y))
        self.prototypes.copy_(self.compute_prototypes(torch.cat(zs), torch.cat(obs), torch.cat(labels)))
        self.has_prototypes = True
        self.train(was_training)

    # ----- the model -----
    def prototype_terms(self, v: torch.Tensor, observed: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """Per-modality prototypical CE, scores, coefficients and the dominant modality's negative
        entropy for one batch (module docstring)."""
        labels = label_grid(self.task, y)  # (B, W)
        pce, scores, neg_ent = [], [], []
        for i in range(len(self.modalities)):
            logits = prototype_logits(v[:, i], self.prototypes[i])  # (B, W, K)
            logp = logits.log_softmax(-1)
            ce = -logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(-1)  # (B,)
            p_true = logp.detach().gather(-1, labels.unsqueeze(-1)).squeeze(-1).exp().mean(-1)
            ent = (logp.exp() * logp).sum(-1).mean(-1)  # (B,) negative entropy, mean over labels
            w = observed[:, i].to(ce.dtype)
            n = w.sum().clamp_min(1.0)
            pce.append((ce * w).sum() / n)
            scores.append((p_true * w).sum() / n)
            neg_ent.append((ent * w).sum() / n)
        valid = observed.any(0)
        s = torch.stack(scores).detach()
        beta, dom = pmr_coefficients(s.double().cpu(), valid.cpu(), self.cfg.alpha)
        return {"pce": pce, "scores": s, "beta": beta, "dominant": dom, "neg_entropy": neg_ent}

    def forward(self, batch: Batch) -> ModelOutput:
        v = self.embed(batch).inputs
        logits = self.head(v.flatten(1))
        out = ModelOutput(logits=logits, embeddings=v)
        if batch.y is None:
            return out
        ce = self.task.loss(logits, batch.y)
        losses: dict[str, torch.Tensor] = {"ce": ce}
        total = ce
        if self.training and self.has_prototypes:
            terms = self.prototype_terms(v, batch.observed, batch.y)
            for i, m in enumerate(self.modalities):
                losses[f"pce_{m}"] = terms["pce"][i]
                if float(terms["beta"][i]) > 0:
                    total = total + float(terms["beta"][i]) * terms["pce"][i]
            dom = terms["dominant"]
            if dom >= 0 and self.epoch <= self.cfg.er_epochs and self.cfg.mu > 0:
                losses["er"] = terms["neg_entropy"][dom]
                total = total + self.cfg.mu * losses["er"]
            self._record(terms)
            out.extras.update(terms)
        losses["total"] = total
        out.loss = total
        out.losses = losses
        return out

    def _record(self, terms: dict[str, Any]) -> None:
        for i, m in enumerate(self.modalities):
            self._stats.setdefault(f"pmr_coef_{m}", []).append(float(terms["beta"][i]))
            self._stats.setdefault(f"pmr_score_{m}", []).append(float(terms["scores"][i]))
            self._stats.setdefault(f"pmr_dominant_{m}", []).append(float(terms["dominant"] == i))

    # ----- trainer hooks -----
    def on_epoch_start(self, ctx: Any) -> None:
        self.epoch = ctx.epoch
        self._stats = {}
        self.refresh_prototypes(ctx)

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        return {key: sum(vals) / len(vals) for key, vals in sorted(self._stats.items()) if vals}
