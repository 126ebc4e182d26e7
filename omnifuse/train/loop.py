"""One generic trainer for every fusion method: one fold of cross-validation.

Per fold k (docs/design.md "Evaluation protocol"): fold k is the test set; the other folds are the training
part, of which 10 % of the patients (stratified by label) form the inner validation set for early
stopping (and, if the method asks for it, another patient-level slice is held out for the method).
Inputs are normalised with statistics of the training part (``train.normalize``). Adam with the
configured learning rate and weight decay; batches are drawn by index from tensors held in memory.
After every epoch: the method's epoch hook (TLA mining, ...), then the inner-validation AUROC (or loss);
the best epoch's parameters are restored when training stops (max_epochs, or ``patience`` epochs
without improvement). Seeded and deterministic on CPU (``torch.use_deterministic_algorithms``,
bounded threads).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from omnifuse.features.runtime import cpu_supports_bf16, keep_freed_memory
from omnifuse.formats.checkpoint import make_checkpoint
from omnifuse.methods.base import Batch, FusionMethod, MethodConfig, ModelSpec
from omnifuse.methods.registry import build_method
from omnifuse.metrics import compute_metrics
from omnifuse.train.config import TrainConfig
from omnifuse.train.data import RunData
from omnifuse.train.normalize import FittedNormalizer, get_normalizer
from omnifuse.train.optim import FusedAdam
from omnifuse.train.splits import split_patients

log = logging.getLogger("omnifuse.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """The precision of the training steps (``train.precision``; ``auto``: bf16 where supported)."""
    if cfg.precision != "auto":
        return cfg.precision
    supported = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_supports_bf16()
    return "bf16" if supported else "fp32"


def setup_torch(cfg: TrainConfig, device: torch.device) -> None:
    """Bounded threads, freed memory kept for the next batches (:func:`keep_freed_memory`) and, on CUDA,
    deterministic algorithms (with a fixed cuBLAS workspace).

    On CPU the kernels these models use are deterministic for a fixed thread count (the determinism
    tests check it), and ``torch.use_deterministic_algorithms`` costs ~3 s per process: it imports
    torch._dynamo / torch._inductor, a large share of a short training job.
    """
    torch.set_num_threads(cfg.threads)
    keep_freed_memory()
    if cfg.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def fold_seed(seed: int, fold: int, purpose: int = 0) -> int:
    """A distinct, reproducible seed per (run seed, fold, purpose)."""
    return int(np.random.SeedSequence([seed, fold, purpose]).generate_state(1)[0])


@dataclass
class FitContext:
    """What the trainer hands to method hooks."""

    data: RunData
    normalizers: dict[str, FittedNormalizer]  # per-fold normalisation, applied to every batch
    train_idx: torch.Tensor
    val_idx: torch.Tensor
    holdout_idx: torch.Tensor
    test_idx: torch.Tensor
    cfg: TrainConfig
    device: torch.device
    generator: torch.Generator  # for method-side randomness (e.g. OGM-GE noise), seeded per fold
    precision: str = "fp32"  # of the training steps (and of training-time work such as TLA mining)
    trim: frozenset[str] = frozenset()  # modalities whose batches drop all-padding steps (RunData.batch)
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def autocast(self) -> torch.autocast:
        """The training steps' precision: bf16 autocast, or a no-op for fp32. Evaluation (validation,
        test, the reported imputation quality) runs outside it, in fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def batches(
        self,
        idx: torch.Tensor,
        *,
        targets: bool = False,
        labels: bool = True,
        shuffle: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Batches of rows ``idx`` (``targets``: training batches with imputation targets)."""
        size = batch_size or self.cfg.eval_batch_size
        if shuffle:
            idx = idx[torch.randperm(len(idx), generator=generator or self.generator)]
        for part in idx.split(size):
            yield self.data.batch(
                part, self.normalizers, targets=targets, labels=labels, device=self.device, trim=self.trim
            )

    @staticmethod
    def clock() -> float:
        return time.perf_counter()


@dataclass
class Predictions:
    idx: np.ndarray  # rows of the run data
    probs: np.ndarray  # (N, C)
    head_probs: np.ndarray | None  # (N, M, C)
    head_mask: np.ndarray | None  # (N, M)
    imputed: np.ndarray | None  # (N, M)
    observed: np.ndarray  # (N, M)
    logits: torch.Tensor


@torch.no_grad()
def predict_rows(model: FusionMethod, ctx: FitContext, idx: torch.Tensor) -> Predictions:
    """Eval-mode predictions (inputs only, no targets) for rows ``idx``."""
    model.eval()
    logits, heads, head_mask, imputed, observed = [], [], [], [], []
    for batch in ctx.batches(idx, targets=False, labels=False):
        out = model(batch)
        logits.append(out.logits.float().cpu())
        observed.append(batch.observed.cpu())
        if out.modality_logits is not None:
            m = out.modality_logits.shape[1]
            heads.append(
                torch.stack([model.task.probs(out.modality_logits[:, j]) for j in range(m)], 1).float().cpu()
            )
            head_mask.append(out.modality_mask.cpu())
        if out.imputed is not None:
            imputed.append(out.imputed.cpu())
    lg = torch.cat(logits) if logits else torch.zeros(0, model.spec.n_outputs)
    return Predictions(
        idx=idx.numpy(),
        probs=model.task.probs(lg).numpy(),
        head_probs=torch.cat(heads).numpy() if heads else None,
        head_mask=torch.cat(head_mask).numpy() if head_mask else None,
        imputed=torch.cat(imputed).numpy() if imputed else None,
        observed=torch.cat(observed).numpy() if observed else np.zeros((0, len(model.modalities)), bool),
        logits=lg,
    )


def y_numpy(data: RunData, idx: np.ndarray) -> np.ndarray:
    y = data.y[torch.as_tensor(idx, dtype=torch.long)].numpy()
    return y[:, 0] if data.meta.kind == "binary" else y


def evaluate_rows(
    model: FusionMethod, ctx: FitContext, idx: torch.Tensor
) -> tuple[dict[str, Any], Predictions]:
    pred = predict_rows(model, ctx, idx)
    metrics = compute_metrics(
        y_numpy(ctx.data, pred.idx), pred.probs, ctx.data.meta.kind, ctx.data.meta.label_names
    )
    metrics["loss"] = float(model.task.loss(pred.logits, ctx.data.y[idx])) if len(idx) else float("nan")
    return metrics, pred


def fit_normalizers(data: RunData, train_idx: np.ndarray, cfg: TrainConfig) -> dict[str, FittedNormalizer]:
    """Each modality's normaliser (``train.normalize``) fitted on the training rows where it is present
    (modalities set to ``none`` are left out)."""
    fitted: dict[str, FittedNormalizer] = {}
    for m in data.modalities:
        name = cfg.normalizer_for(m)
        if name == "none":
            continue
        j = data.modalities.index(m)
        rows = torch.as_tensor(train_idx, dtype=torch.long)
        rows = rows[data.present[rows, j]]
        if len(rows) == 0:
            raise ValueError(f"normaliser {name} for {m}: no training sample of this fold has {m}")
        steps = int(data.lengths(m)[rows].max())  # the steps after every row's last valid one: padding
        x, mask = data.x[m][:, :steps].index_select(0, rows), data.mask[m][:, :steps].index_select(0, rows)
        fitted[m] = FittedNormalizer(name, get_normalizer(name).fit(x, mask, data.attrs.get(m, {})))
    return fitted


@dataclass
class FoldResult:
    fold: int
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    predictions: Predictions
    model: FusionMethod
    checkpoint: dict[str, Any]
    context: FitContext  # the split indices, per-fold inputs and data (for inspection and tests)


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fit_fold(
    data: RunData,
    method: str,
    method_cfg: MethodConfig,
    cfg: TrainConfig,
    fold: int,
) -> FoldResult:
    """Train ``method`` on fold ``fold`` of ``data`` and predict its test set (module docstring)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    setup_torch(cfg, device)
    precision = resolve_precision(cfg, device)
    t_start = time.perf_counter()
    test = np.flatnonzero(data.folds == fold)
    pool = np.flatnonzero(data.folds != fold)
    if test.size == 0 or pool.size == 0:
        raise ValueError(
            f"fold {fold}: {test.size} test and {pool.size} training samples; check the cohort's folds"
        )
    train, val = split_patients(
        pool,
        data.patients,
        data.strat_labels(pool),
        data.meta.kind,
        cfg.val_fraction,
        fold_seed(cfg.seed, fold, 1),
    )
    torch.manual_seed(fold_seed(cfg.seed, fold, 0))
    spec = ModelSpec(
        modalities=data.modalities,
        inputs=data.inputs,
        shapes=data.shapes,
        kind=data.meta.kind,
        n_outputs=data.meta.n_outputs,
        label_names=tuple(data.meta.label_names),
    )
    model = build_method(method, spec, method_cfg).to(device)
    holdout = train[:0]
    if model.holdout_fraction > 0:
        train, holdout = split_patients(
            train, data.patients, data.strat_labels(train), data.meta.kind, model.holdout_fraction,
            fold_seed(cfg.seed, fold, 2),
        )  # fmt: skip
    normalizers = fit_normalizers(data, train, cfg)
    as_t = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    generator = torch.Generator().manual_seed(fold_seed(cfg.seed, fold, 3))
    ctx = FitContext(
        data, normalizers, as_t(train), as_t(val), as_t(holdout), as_t(test), cfg, device, generator,
        precision, trim=model.encoders.length_invariant(),
    )  # fmt: skip
    log.info(
        "fold %d: %s on %s, %d train / %d inner-val / %d held-out / %d test samples",
        fold, method, "+".join(data.inputs), train.size, val.size, holdout.size, test.size,
    )  # fmt: skip
    optimizer = make_optimizer(model, cfg)
    val_y = y_numpy(data, val)
    use_auroc = cfg.early_stopping == "auroc" and _auroc_defined(val_y, data.meta.kind)
    if cfg.early_stopping == "auroc" and not use_auroc:
        log.warning("fold %d: inner validation has a single class; early stopping on validation loss", fold)
    model.on_fit_start(ctx)
    best_score, best_epoch, best_state = -math.inf, 0, _state_copy(model)
    batch_gen = torch.Generator().manual_seed(fold_seed(cfg.seed, fold, 4))
    epochs = tqdm(range(1, cfg.max_epochs + 1), desc=f"fold {fold}", disable=not cfg.progress, leave=False)
    for epoch in epochs:
        ctx.epoch = epoch
        t0 = time.perf_counter()
        model.train()
        model.on_epoch_start(ctx)
        sums: dict[str, float] = {}
        seen = 0
        for batch in ctx.batches(
            ctx.train_idx, targets=True, shuffle=True, batch_size=cfg.batch_size, generator=batch_gen
        ):
            with ctx.autocast():
                out = model(batch)
            if out.loss is None:
                raise RuntimeError(f"method {method} returned no loss for a labelled training batch")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            model.after_backward(batch, out, ctx)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            n = len(batch)
            for key, value in out.losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
            seen += n
        t1 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch, **{f"loss_{k}": v / max(seen, 1) for k, v in sums.items()}}
        row.update(model.on_epoch_end(ctx))
        t2 = time.perf_counter()
        if len(val):
            val_metrics, _ = evaluate_rows(model, ctx, ctx.val_idx)
        else:
            val_metrics = {"auroc": float("nan"), "auprc": float("nan"), "loss": float("nan")}
        row.update(
            val_auroc=val_metrics["auroc"], val_auprc=val_metrics["auprc"], val_loss=val_metrics["loss"]
        )
        score = val_metrics["auroc"] if use_auroc else -val_metrics["loss"]
        if not math.isfinite(score):
            score = -math.inf
        improved = score > best_score or best_epoch == 0
        if improved:
            best_score, best_epoch, best_state = score, epoch, _state_copy(model)
        t3 = time.perf_counter()
        row.update(
            time_train_s=t1 - t0, time_epoch_end_s=t2 - t1, time_val_s=t3 - t2, time_s=t3 - t0, best=improved
        )
        ctx.history.append(row)
        epochs.set_postfix(val=f"{val_metrics['auroc']:.3f}", best=best_epoch)
        if epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    test_metrics, pred = evaluate_rows(model, ctx, ctx.test_idx)
    wall = time.perf_counter() - t_start
    train_time = sum(r["time_train_s"] for r in ctx.history)
    metrics = {
        "fold": fold,
        "method": method,
        "combo": "+".join(data.inputs),
        "dataset": data.meta.dataset,
        "task": data.meta.task,
        "kind": data.meta.kind,
        **{k: v for k, v in test_metrics.items()},
        "best_epoch": best_epoch,
        "epochs_run": len(ctx.history),
        "early_stopping": "auroc" if use_auroc else "loss",
        "val_score": best_score,
        "n_train": int(train.size),
        "n_val": int(val.size),
        "n_holdout": int(holdout.size),
        "n_test": int(test.size),
        "wall_s": wall,
        "train_samples_per_s": len(ctx.history) * train.size / train_time if train_time > 0 else float("nan"),
        "time_train_s": train_time,
        "time_epoch_end_s": sum(r["time_epoch_end_s"] for r in ctx.history),
        "time_val_s": sum(r["time_val_s"] for r in ctx.history),
        "missing_rate": cfg.missing_rate,
        "missing_modality": cfg.missing_modality,
        "cohort_mode": cfg.cohort_mode,
        "precision": precision,
    }
    checkpoint = make_checkpoint(
        model,
        method,
        method_cfg,
        cfg.to_dict(),
        {m: n.to_dict() for m, n in normalizers.items()},
        data.meta,
        fold,
        best_epoch,
    )
    log.info(
        "fold %d: test AUROC %.4f AUPRC %.4f (best epoch %d of %d, %.1f s)",
        fold, metrics["auroc"], metrics["auprc"], best_epoch, len(ctx.history), wall,
    )  # fmt: skip
    return FoldResult(fold, metrics, ctx.history, pred, model, checkpoint, ctx)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> FusedAdam | torch.optim.Optimizer:
    """Adam: torch's fused kernel (:class:`~omnifuse.train.optim.FusedAdam`) on CPU and CUDA, otherwise
    ``torch.optim.Adam`` (same update rule)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if FusedAdam.available() and all(p.device.type in ("cpu", "cuda") for p in params):
        return FusedAdam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _auroc_defined(y: np.ndarray, kind: str) -> bool:
    if y.shape[0] == 0:
        return False
    if kind == "multiclass":
        return len(np.unique(y)) >= 2
    y2 = y.reshape(y.shape[0], -1)
    return bool(((y2.min(0) == 0) & (y2.max(0) == 1)).any())
