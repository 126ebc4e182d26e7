"""OmniFuse (Wu et al., Information Fusion 117, 2025): imputation (CRA), DWFuse and TLA.

Everything here follows docs/design.md "Method decisions"; each ambiguous choice is a field of
:class:`OmniFuseConfig` with the default of docs/design.md (docs/methods.md lists them all).

* Embeddings: every modality's encoder gives v^m (B, d); a missing modality is the encoder applied to a
  zero input. v = [v^1; ...; v^M].
* Modality dropout (``modality_dropout``): in training, a sample with two or more inputs keeps, with this
  probability, a uniformly random non-empty proper subset of them (the missing patterns of the paper's
  Table 1). It is applied to every variant alike, with or without imputation, so that comparing a
  variant with imputation to one without measures the imputation, not the augmentation.
* Forward imputation (``imp_fw``): a CRA of K residual autoencoders over v; RA_k reads
  v + Σ_{j<k} Δz_j; v' = v + Σ Δz. The dropped slots are supervised: L_forward = MSE(v'^m, v^m) over
  dropped slots with a true embedding (targets detached). The run's non-input modalities are dropped
  slots of every sample. The latents c_1..c_K feed the joint head g_ra (``joint_input``).
* Backward imputation (``imp_bw``): a second CRA with its own weights reads v' with the slots that were
  inputs replaced by their missing placeholders and must regenerate them: L_backward = masked MSE over
  the input slots of the samples that have at least one imputed slot (a sample without one would hand
  the backward CRA placeholders only, nothing to regenerate its inputs from).
* DWFuse (``dwfuse``): per-modality heads g^m on the completed embeddings (observed slots keep v^m,
  missing slots take v'^m, without back-propagating into the imputer unless ``heads_train_imputer``);
  p^n = probability head n gives to the true class (per label for multi-label);
  ω^m = [Π_{n≠m}(1 − p^n)]^{β/(M−1)} without gradient; L_enc = Σ_m ω^m · CE(g^m, y). Missing modalities
  are excluded from the product (and from the sum) unless imputed.
* TLA (``tla``): after every epoch each non-empty combination δ of the input modalities is scored on the
  training set with only δ observed (the rest missing, imputed if ``imp_fw``): D(δ) = summed per-sample
  CE over the samples that have all of δ; δ_lazy = argmax D (``tla_embeddings: epoch`` scores with the
  embeddings the epoch's training batches computed instead of a fresh encoder pass). In the next epoch
  L_TLA = CE of the δ_lazy-only prediction on the batch samples that have all of δ_lazy
  (``tla_mask: observed``: only samples whose observed combination equals δ_lazy).
* Loss (eq. 18): L = L_forward + λ1·L_backward + λ2·(L_enc + α·L_ra) + λ3·L_TLA, each term present only
  when its switch is on. With every switch off (and no modality dropout) this is
  λ2·α·CE(head(v)) = CE(head(v)): concatenation.
* Prediction: the joint head (``predict_with: joint``), or the mean of the modality heads' probabilities
  (``heads``), or the average of both (``both``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelOutput, ModelSpec
from omnifuse.nn.blocks import CascadedResidualAutoencoder, make_head

JOINT_INPUTS = ("latents_concat", "latents_mean", "latents_last")
HEAD_INPUTS = ("completed", "cra_output")
PREDICT_WITH = ("joint", "heads", "both")
TLA_MASKS = ("all", "observed")
TLA_REDUCE = ("sum", "mean")
TLA_EMBEDDINGS = ("fresh", "epoch")
DWFUSE_EXPONENTS = ("available", "all")
EPS = 1e-6


@dataclass
class OmniFuseConfig(MethodConfig):
    # Table 4 ablation switches
    dwfuse: bool = True  # dynamic weighted fusion of the modality heads (L_enc)
    tla: bool = True  # traceable laziness activation (L_TLA)
    imp_fw: bool = True  # forward imputation by the CRA (L_forward); latents feed the joint head
    imp_bw: bool = True  # backward imputation by a second CRA (L_backward); needs imp_fw
    # paper hyper-parameters (§4.3)
    k: int = 5  # residual autoencoders per CRA
    alpha: float = 0.1  # weight of L_ra inside the λ2 term
    beta: float = 0.5  # DWFuse exponent
    lambda1: float = 1.0  # weight of L_backward
    lambda2: float = 10.0  # weight of (L_enc + α·L_ra)
    lambda3: float = 0.5  # weight of L_TLA
    cra_hidden: int = 256  # hidden width of each residual autoencoder
    cra_latent: int = 128  # latent width c_k of each residual autoencoder
    # switches for what the paper leaves open (defaults: docs/design.md "Method decisions")
    joint_input: str = "latents_concat"  # g_ra reads the latents c_1..c_K: concatenated, mean or last
    head_input: str = "completed"  # heads read observed v^m + imputed v'^m ("completed") or all of v'
    # the DWFuse heads' loss back-propagates into the imputed embeddings (false: the imputer is trained
    # by L_forward, L_backward and the joint head only; with λ2 = 10 the heads' loss would otherwise turn
    # the imputations into label-discriminative vectors rather than estimates of the missing embedding)
    heads_train_imputer: bool = False
    predict_with: str = "joint"  # test-time prediction: joint head, mean of modality heads, or both
    modality_dropout: float = 0.5  # training: P(a sample keeps a random proper subset of its inputs)
    tla_mask: str = "all"  # L_TLA on samples that have all of δ_lazy ("all") or exactly δ_lazy
    tla_reduce: str = "sum"  # D(δ): summed (docs/design.md) or mean per-sample CE
    tla_embeddings: str = "fresh"  # mining: a fresh encoder pass ("fresh") or the epoch's own ("epoch")
    dwfuse_exponent: str = "available"  # β/(M−1) with M = available (incl. imputed) or all modalities
    imputation_targets: bool = True  # other modalities of the task are imputation targets in training

    def validate(self) -> None:
        super().validate()
        for name, allowed in (
            ("joint_input", JOINT_INPUTS),
            ("head_input", HEAD_INPUTS),
            ("predict_with", PREDICT_WITH),
            ("tla_mask", TLA_MASKS),
            ("tla_reduce", TLA_REDUCE),
            ("tla_embeddings", TLA_EMBEDDINGS),
            ("dwfuse_exponent", DWFUSE_EXPONENTS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"omnifuse.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.imp_bw and not self.imp_fw:
            raise ValueError("omnifuse.imp_bw needs imp_fw (backward imputation reads the forward output)")
        if self.predict_with != "joint" and not self.dwfuse:
            raise ValueError(f"omnifuse.predict_with={self.predict_with!r} needs the modality heads (dwfuse)")
        if self.k < 1:
            raise ValueError(f"omnifuse.k must be >= 1, got {self.k}")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise ValueError(f"omnifuse.modality_dropout must be in [0, 1], got {self.modality_dropout}")


@dataclass
class Fused:
    joint_logits: torch.Tensor  # (B, C)
    completed: torch.Tensor  # (B, M, d) what the modality heads read
    v_prime: torch.Tensor | None  # (B, M, d) forward CRA output
    head_logits: torch.Tensor | None  # (B, M, C)
    head_mask: torch.Tensor  # (B, M) heads that see an observed or imputed embedding


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the masked (sample, modality) slots of the slot's mean squared error (0 if none)."""
    per_slot = (pred - target).pow(2).mean(-1)
    weight = mask.to(per_slot.dtype)
    return (per_slot * weight).sum() / weight.sum().clamp_min(1.0)


def dwfuse_weights(
    p_true: torch.Tensor, available: torch.Tensor, beta: float, exponent: str = "available"
) -> torch.Tensor:
    """ω^m = [Π_{n≠m, n available} (1 − p^n)]^{β/(M−1)} per sample (and label), without gradient.

    ``p_true``: (B, M, W) probability each modality head gives to the true class; ``available``: (B, M).
    ``exponent``: M − 1 counts the sample's available modalities ("available") or all M ("all"). A sample
    with a single available modality gets ω = 1.
    """
    with torch.no_grad():
        avail = available.unsqueeze(-1).to(p_true.dtype)
        log_miss = torch.log((1 - p_true).clamp_min(EPS)) * avail
        others = log_miss.sum(1, keepdim=True) - log_miss
        if exponent == "available":
            n_other = (available.sum(1, keepdim=True) - 1).unsqueeze(-1).to(p_true.dtype)
        else:
            n_other = torch.full_like(avail[:, :1], float(available.shape[1] - 1))
        scale = torch.where(n_other > 0, beta / n_other.clamp_min(1.0), torch.zeros_like(n_other))
        return torch.exp(scale * others)


def combinations(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty combination of ``names`` (2^M − 1 of them), singles first, in name order."""
    return [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]


class OmniFuse(FusionMethod):
    name: ClassVar[str] = "omnifuse"
    Config: ClassVar[type[MethodConfig]] = OmniFuseConfig
    cfg: OmniFuseConfig

    def __init__(self, spec: ModelSpec, cfg: OmniFuseConfig):
        super().__init__(spec, cfg)
        m, d, c = spec.n_modalities, cfg.d, spec.n_outputs
        if cfg.imp_fw:
            joint_in = cfg.cra_latent * (cfg.k if cfg.joint_input == "latents_concat" else 1)
        else:
            joint_in = m * d
        # build order: encoders, joint head, then the optional parts (with every switch off the model is
        # initialised exactly like the `concat` method)
        self.joint_head = make_head(joint_in, c, cfg.head_hidden, cfg.dropout)
        self.heads = (
            nn.ModuleDict({mod: make_head(d, c, cfg.head_hidden, cfg.dropout) for mod in spec.modalities})
            if cfg.dwfuse
            else None
        )
        self.cra_fw = (
            CascadedResidualAutoencoder(m * d, cfg.k, cfg.cra_hidden, cfg.cra_latent) if cfg.imp_fw else None
        )
        self.cra_bw = (
            CascadedResidualAutoencoder(m * d, cfg.k, cfg.cra_hidden, cfg.cra_latent) if cfg.imp_bw else None
        )
        self.lazy: tuple[str, ...] | None = None  # δ_lazy mined after the last epoch
        self._stash: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # tla_embeddings: epoch
        self._drops: torch.Generator | None = None  # modality dropout's own stream (set per fold)

    @classmethod
    def uses_imputation_targets(cls, cfg: MethodConfig) -> bool:
        return bool(getattr(cfg, "imp_fw", False) and getattr(cfg, "imputation_targets", False))

    # ----- the model -----
    def fuse(self, v: torch.Tensor, inputs: torch.Tensor) -> Fused:
        """Fusion of the embeddings ``v`` (B, M, d) whose observed slots are ``inputs`` (B, M)."""
        b, m, d = v.shape
        if self.cra_fw is not None:
            cra = self.cra_fw(v.reshape(b, m * d))
            v_prime = cra.out.view(b, m, d)
            to_heads = v_prime if self.cfg.heads_train_imputer else v_prime.detach()
            completed = (
                torch.where(inputs.unsqueeze(-1), v, to_heads)
                if self.cfg.head_input == "completed"
                else to_heads
            )
            if self.cfg.joint_input == "latents_concat":
                joint_in = torch.cat(cra.latents, dim=-1)
            elif self.cfg.joint_input == "latents_mean":
                joint_in = torch.stack(cra.latents).mean(0)
            else:
                joint_in = cra.latents[-1]
            head_mask = torch.ones_like(inputs)
        else:
            v_prime, completed, joint_in, head_mask = None, v, v.reshape(b, m * d), inputs
        head_logits = None
        if self.heads is not None:
            head_logits = torch.stack(
                [self.heads[mod](completed[:, i]) for i, mod in enumerate(self.modalities)], 1
            )
        return Fused(self.joint_head(joint_in), completed, v_prime, head_logits, head_mask)

    def final_logits(self, fused: Fused) -> torch.Tensor:
        """The prediction (``predict_with``): joint head, mean of available heads, or their average."""
        if self.cfg.predict_with == "joint" or fused.head_logits is None:
            return fused.joint_logits
        probs = torch.stack(
            [self.task.probs(fused.head_logits[:, i]) for i in range(len(self.modalities))], 1
        )
        w = fused.head_mask.unsqueeze(-1).to(probs.dtype)
        heads = (probs * w).sum(1) / w.sum(1).clamp_min(1.0)
        if self.cfg.predict_with == "both":
            heads = 0.5 * (heads + self.task.probs(fused.joint_logits))
        return self.task.logits_from_probs(heads)

    def augment(self, observed: torch.Tensor) -> torch.Tensor:
        """Training-time missing patterns: with probability ``modality_dropout`` a sample with two or more
        inputs keeps a uniformly random non-empty proper subset of them (Table 1's six patterns for M=3)."""
        b, m = observed.shape

        def rand(*shape: int) -> torch.Tensor:  # the fold's own stream: every variant draws the same
            return torch.rand(*shape, generator=self._drops).to(observed.device)

        n_obs = observed.sum(1)
        todo = (rand(b) < self.cfg.modality_dropout) & (n_obs >= 2)
        keep = observed.clone()
        for _ in range(32):  # rejection sampling of a uniform subset that is neither empty nor full
            if not todo.any():
                break
            cand = (rand(b, m) < 0.5) & observed
            ok = todo & cand.any(1) & (cand != observed).any(1)
            keep[ok] = cand[ok]
            todo = todo & ~ok
        if todo.any():  # vanishingly rare: keep one random input
            pick = torch.where(observed, rand(b, m), -1.0).argmax(1)
            single = F.one_hot(pick, m).bool()
            keep[todo] = single[todo]
        return keep

    def forward(self, batch: Batch) -> ModelOutput:
        emb = self.embed(batch)
        observed = batch.observed
        if self.training and self.cfg.tla and self.cfg.tla_embeddings == "epoch" and batch.y is not None:
            self._stash.append((emb.true.detach(), observed, batch.y))
        inputs = observed
        if self.training and self.cfg.modality_dropout > 0:
            inputs = self.augment(observed)
            out_extras = {"inputs": inputs}
        else:
            out_extras = {}
        v = torch.where(inputs.unsqueeze(-1), emb.true, emb.placeholder.unsqueeze(0))
        fused = self.fuse(v, inputs)
        imputed = ~inputs if self.cfg.imp_fw else torch.zeros_like(inputs)
        out = ModelOutput(
            logits=self.final_logits(fused),
            modality_logits=fused.head_logits,
            modality_mask=fused.head_mask,
            imputed=imputed,
            embeddings=fused.completed,
            extras=out_extras,
        )
        if batch.y is None:
            return out
        y, cfg, zero = batch.y, self.cfg, v.sum() * 0.0
        losses: dict[str, torch.Tensor] = {"ra": self.task.loss(fused.joint_logits, y)}
        total = cfg.lambda2 * cfg.alpha * losses["ra"]
        if cfg.dwfuse:
            losses["enc"] = self.dwfuse_loss(fused.head_logits, fused.head_mask, y)
            total = total + cfg.lambda2 * losses["enc"]
        if cfg.imp_fw:
            targets = batch.present & ~inputs if batch.present is not None else torch.zeros_like(inputs)
            losses["forward"] = masked_mse(fused.v_prime, emb.true.detach(), targets)
            total = total + losses["forward"]
        if cfg.imp_bw:
            u = torch.where(inputs.unsqueeze(-1), emb.placeholder.unsqueeze(0), fused.v_prime)
            b, m, d = u.shape
            regenerated = self.cra_bw(u.reshape(b, m * d)).out.view(b, m, d)
            cycled = inputs & (~inputs).any(1, keepdim=True)  # input slots of samples with an imputed slot
            losses["backward"] = masked_mse(regenerated, emb.true.detach(), cycled)
            total = total + cfg.lambda1 * losses["backward"]
        if cfg.tla:
            losses["tla"] = self.tla_loss(emb.true, emb.placeholder, observed, y) if self.lazy else zero
            total = total + cfg.lambda3 * losses["tla"]
        out.loss = total
        out.losses = {**losses, "total": total}
        return out

    def dwfuse_loss(
        self, head_logits: torch.Tensor, available: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """L_enc = Σ_m ω^m · CE(g^m, y) over available (observed or imputed) modalities, batch mean."""
        m = head_logits.shape[1]
        elem = torch.stack([self.task.elementwise_loss(head_logits[:, i], y) for i in range(m)], 1)
        p_true = torch.stack([self.task.prob_true(head_logits[:, i].detach(), y) for i in range(m)], 1)
        omega = dwfuse_weights(p_true, available, self.cfg.beta, self.cfg.dwfuse_exponent)
        weighted = omega * elem * available.unsqueeze(-1).to(elem.dtype)
        return weighted.sum(1).mean()

    def lazy_mask(self, device: torch.device | None = None) -> torch.Tensor:
        lazy = self.lazy or ()
        return torch.tensor([mod in lazy for mod in self.modalities], device=device)

    def tla_select(self, observed: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Samples L_TLA (and mining) use: those with all of δ observed, or exactly δ (``tla_mask``)."""
        if self.cfg.tla_mask == "observed":
            return (observed == delta).all(1)
        return (observed | ~delta).all(1)

    def tla_loss(
        self, true: torch.Tensor, placeholder: torch.Tensor, observed: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """CE of the δ_lazy-only prediction on the selected batch samples (0 when none qualifies)."""
        delta = self.lazy_mask(true.device)
        sel = self.tla_select(observed, delta)
        if not bool(sel.any()):
            return true.sum() * 0.0
        v = torch.where(delta.view(1, -1, 1), true[sel], placeholder.unsqueeze(0))
        inputs = delta.unsqueeze(0).expand(v.shape[0], -1)
        return self.task.loss(self.final_logits(self.fuse(v, inputs)), y[sel])

    # ----- epoch-level work -----
    @torch.no_grad()
    def combination_scores(
        self,
        true: torch.Tensor,
        placeholder: torch.Tensor,
        observed: torch.Tensor,
        y: torch.Tensor,
        chunk: int = 1024,
    ) -> dict[tuple[str, ...], float]:
        """D(δ) for every non-empty combination δ of the input modalities (TLA mining). All combinations
        of a chunk of samples go through the model in one pass (stacked masks)."""
        combos = combinations(self.spec.inputs)
        deltas = torch.tensor([[mod in c for mod in self.modalities] for c in combos], device=true.device)
        # (C, N): which samples score each combination
        selected = torch.stack([self.tla_select(observed, delta) for delta in deltas])
        totals = torch.zeros(len(combos), dtype=torch.float64)
        step = max(1, chunk // len(combos))
        for start in range(0, true.shape[0], step):
            part = slice(start, start + step)
            n = true[part].shape[0]
            v = torch.where(deltas.view(-1, 1, len(self.modalities), 1), true[part].unsqueeze(0), placeholder)
            inputs = deltas.unsqueeze(1).expand(-1, n, -1)
            logits = self.final_logits(self.fuse(v.flatten(0, 1), inputs.flatten(0, 1)))
            losses = self.task.sample_loss(logits, y[part].repeat(len(combos), *([1] * (y.dim() - 1))))
            totals += (losses.view(len(combos), n) * selected[:, part]).double().sum(1).cpu()
        scores: dict[tuple[str, ...], float] = {}
        for i, combo in enumerate(combos):
            count = int(selected[i].sum())
            if count:
                scores[combo] = float(totals[i]) / (count if self.cfg.tla_reduce == "mean" else 1)
        return scores

    @torch.no_grad()
    def mine_lazy(self, ctx: Any) -> dict[str, Any]:
        """Score every combination on the training set and set δ_lazy = argmax D (ties: first). Mining is
        training-time work: it runs in the training steps' precision (``ctx.autocast()``)."""
        was_training = self.training
        self.eval()
        trues, observed, ys = [], [], []
        with ctx.autocast():
            if self.cfg.tla_embeddings == "epoch" and self._stash:  # the epoch's own embeddings
                trues, observed, ys = (list(t) for t in zip(*self._stash, strict=True))
            else:
                for batch in ctx.batches(ctx.train_idx, targets=False, labels=True):
                    trues.append(self.encoders(batch.x, batch.mask))
                    observed.append(batch.observed)
                    ys.append(batch.y)
            self._stash = []
            placeholder = self.placeholder(trues[0].device)
            scores = self.combination_scores(
                torch.cat(trues), placeholder, torch.cat(observed), torch.cat(ys)
            )
        self.train(was_training)
        if not scores:
            self.lazy = None
            return {"lazy": ""}
        best = max(scores.values())
        self.lazy = next(c for c, s in scores.items() if s == best)
        row: dict[str, Any] = {"lazy": "+".join(self.lazy)}
        row.update({f"tla_D_{'+'.join(c)}": s for c, s in scores.items()})
        return row

    @torch.no_grad()
    def imputation_similarity(self, ctx: Any) -> dict[str, float]:
        """How well the forward CRA imputes each modality on the inner validation set: every modality
        with a true embedding is dropped in turn (the others stay as they are observed) and its imputed
        v'^m is compared with the encoder's v^m:

        * ``imp_cos_<m>``: mean cosine similarity (high whenever the embeddings share a large common
          component, even if the imputation carries no sample-specific information);
        * ``imp_r2_<m>``: centred R² = 1 − Σ‖v'^m − v^m‖² / Σ‖v^m − mean(v^m)‖² over the samples
          (0 for imputing the mean embedding, 1 for perfect imputation, negative when worse than the
          mean); ``imp_cos`` and ``imp_r2`` pool the modalities."""
        was_training = self.training
        self.eval()
        m = len(self.modalities)
        cos, n = torch.zeros(m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)
        sse = torch.zeros(m, dtype=torch.float64)
        s1 = torch.zeros(m, self.cfg.d, dtype=torch.float64)  # Σ v^m and Σ (v^m)² per dimension
        s2 = torch.zeros(m, self.cfg.d, dtype=torch.float64)
        for batch in ctx.batches(ctx.val_idx, targets=True, labels=False):
            true = self.encoders(batch.x, batch.mask)
            placeholder = self.placeholder(true.device)
            for i in range(m):
                inputs = batch.observed.clone()
                inputs[:, i] = False
                ok = batch.present[:, i] & inputs.any(1)
                if not bool(ok.any()):
                    continue
                v = torch.where(inputs[ok].unsqueeze(-1), true[ok], placeholder.unsqueeze(0))
                imputed = self.fuse(v, inputs[ok]).v_prime[:, i].double().cpu()
                target = true[ok, i].double().cpu()
                cos[i] += F.cosine_similarity(imputed, target, dim=-1).sum()
                sse[i] += (imputed - target).pow(2).sum()
                s1[i] += target.sum(0)
                s2[i] += target.pow(2).sum(0)
                n[i] += float(ok.sum())
        self.train(was_training)
        sst = (s2 - s1.pow(2) / n.clamp_min(1).unsqueeze(1)).sum(1)  # Σ ‖v − mean‖² per modality
        row: dict[str, float] = {}
        for i, mod in enumerate(self.modalities):
            if n[i] > 0:
                row[f"imp_cos_{mod}"] = float(cos[i] / n[i])
                row[f"imp_r2_{mod}"] = float(1 - sse[i] / sst[i]) if sst[i] > 0 else float("nan")
        used = n > 0
        if used.any():
            row["imp_cos"] = float(cos.sum() / n.sum())
            row["imp_r2"] = (
                float(1 - sse[used].sum() / sst[used].sum()) if sst[used].sum() > 0 else float("nan")
            )
        return row

    def on_fit_start(self, ctx: Any) -> None:
        """Modality dropout draws from a generator seeded per fold (not the global stream, which model
        initialisation advances differently for every variant): with and without imputation, the
        training batches lose the same modalities."""
        self._drops = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=ctx.generator)))

    def on_epoch_start(self, ctx: Any) -> None:
        self._stash = []

    def on_epoch_end(self, ctx: Any) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if self.cfg.imp_fw and len(ctx.val_idx):
            row.update(self.imputation_similarity(ctx))
        if self.cfg.tla:
            t0 = ctx.clock()
            row.update(self.mine_lazy(ctx))
            row["time_tla_s"] = ctx.clock() - t0
        return row
