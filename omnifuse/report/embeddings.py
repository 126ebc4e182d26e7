"""Figure 8: t-SNE of true vs imputed embeddings, per modality, for the test samples of one run.

For one fold's checkpoint (default fold 0: each fold's model has its own embedding space, so folds are
not pooled), the model is rebuilt with :func:`omnifuse.formats.checkpoint.model_from_checkpoint` and fed
the test fold's samples that have every input modality (cohort ``fold`` = the checkpoint's fold; inputs
prepared and normalised exactly as ``omnifuse predict`` does). For each input modality m, the true
embedding is the modality encoder's output v^m, and the imputed one is the forward CRA's output v'^m
when m alone is removed (replaced by its missing placeholder) and the others stay observed: the same
computation as the imputation similarity of the training history (``OmniFuse.imputation_similarity``).
At most ``max_samples`` samples are used, a deterministic evenly spaced selection in sample-id order.
Per modality, one t-SNE (:class:`sklearn.manifold.TSNE`, PCA initialisation, fixed ``random_state``)
embeds both point sets together.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from omnifuse.report.collect import ReportError
from omnifuse.report.style import ReportStyle

DEFAULT_STYLE = ReportStyle()


def select_rows(ids: np.ndarray, eligible: np.ndarray, max_samples: int) -> np.ndarray:
    """Rows of ``eligible`` (bool), at most ``max_samples``, evenly spaced in sample-id order."""
    rows = np.flatnonzero(eligible)
    rows = rows[np.argsort(np.asarray(ids)[rows].astype(str), kind="stable")]
    if max_samples > 0 and rows.size > max_samples:
        rows = rows[np.linspace(0, rows.size - 1, max_samples).round().astype(np.int64)]
    return rows


def true_and_imputed(
    run_dir: str | Path,
    cohort: str | Path,
    caches: Mapping[str, str | Path],
    fold: int = 0,
    max_samples: int = 500,
    batch_size: int = 256,
) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """(sample ids, modality -> (true (N, d), imputed (N, d))) of the selected test samples."""
    import torch

    from omnifuse.formats.checkpoint import load_checkpoint, model_from_checkpoint
    from omnifuse.formats.cohort import read_cohort
    from omnifuse.methods.omnifuse import OmniFuse
    from omnifuse.train.predict import checkpoint_normalizers, prediction_data

    path = Path(run_dir) / f"fold{fold}" / "checkpoint.pt"
    if not path.is_file():
        raise ReportError(f"{path}: missing (fig8 reads fold {fold}'s checkpoint)")
    ckpt = load_checkpoint(path)
    model = model_from_checkpoint(ckpt)
    if not isinstance(model, OmniFuse) or model.cra_fw is None:
        raise ReportError(f"{path}: fig8 needs an OmniFuse model with forward imputation (imp_fw)")
    inputs_names = tuple(model.spec.inputs)
    if len(inputs_names) < 2:
        raise ReportError(f"{path}: fig8 needs a run with at least two input modalities")
    data, _ = prediction_data(ckpt, caches, cohort)
    frame, _ = read_cohort(cohort)
    test_fold = int(ckpt.get("fold", fold))
    cols = [data.modalities.index(m) for m in inputs_names]
    eligible = (frame["fold"].to_numpy() == test_fold) & data.observed[:, cols].all(1).numpy()
    rows = select_rows(data.ids, eligible, max_samples)
    if rows.size < 5:
        raise ReportError(
            f"fig8: only {rows.size} test samples of fold {test_fold} have all of {'+'.join(inputs_names)}"
        )
    normalizers = checkpoint_normalizers(data, ckpt)
    trues: dict[str, list[np.ndarray]] = {m: [] for m in inputs_names}
    imps: dict[str, list[np.ndarray]] = {m: [] for m in inputs_names}
    with torch.no_grad():
        for part in torch.as_tensor(rows, dtype=torch.long).split(batch_size):
            batch = data.batch(
                part, normalizers, targets=False, labels=False, trim=model.encoders.length_invariant()
            )
            true = model.encoders(batch.x, batch.mask)
            placeholder = model.placeholder(true.device)
            for m, j in zip(inputs_names, cols, strict=True):
                keep = batch.observed.clone()
                keep[:, j] = False
                v = torch.where(keep.unsqueeze(-1), true, placeholder.unsqueeze(0))
                imputed = model.fuse(v, keep).v_prime[:, j]
                trues[m].append(true[:, j].float().numpy())
                imps[m].append(imputed.float().numpy())
    out = {m: (np.concatenate(trues[m]), np.concatenate(imps[m])) for m in inputs_names}
    return np.asarray(data.ids)[rows].astype(str), out


def centred_r2(true: np.ndarray, imputed: np.ndarray) -> float:
    """1 − Σ‖imputed − true‖² / Σ‖true − mean(true)‖²: 0 for imputing the mean embedding, 1 for exact."""
    sst = float(((true - true.mean(0)) ** 2).sum())
    return 1.0 - float(((imputed - true) ** 2).sum()) / sst if sst > 0 else float("nan")


def tsne_frame(
    ids: np.ndarray,
    embeddings: Mapping[str, tuple[np.ndarray, np.ndarray]],
    perplexity: float = 30.0,
    seed: int = 0,
) -> pl.DataFrame:
    """One t-SNE per modality over true + imputed points: modality, kind, sample_id, tsne_1, tsne_2,
    cosine (the sample's cosine similarity between imputed and true embedding) and r2 (the modality's
    centred R² over the plotted samples, :func:`centred_r2`)."""
    from sklearn.manifold import TSNE

    parts = []
    for m, (true, imputed) in embeddings.items():
        n = true.shape[0]
        points = np.concatenate([true, imputed]).astype(np.float64)
        perp = float(min(perplexity, max(1.0, (2 * n - 1) / 3.0)))
        xy = TSNE(
            n_components=2,
            perplexity=perp,
            init="pca",
            random_state=seed,
            method="exact" if n < 200 else "barnes_hut",
        ).fit_transform(points)
        norm = np.linalg.norm(true, axis=1) * np.linalg.norm(imputed, axis=1)
        cosine = (true * imputed).sum(1) / np.maximum(norm, 1e-12)
        r2 = centred_r2(true, imputed)
        parts.append(
            pl.DataFrame(
                {
                    "modality": [m] * (2 * n),
                    "kind": ["true"] * n + ["imputed"] * n,
                    "sample_id": np.concatenate([ids, ids]),
                    "tsne_1": xy[:, 0],
                    "tsne_2": xy[:, 1],
                    "cosine": np.concatenate([cosine, cosine]).astype(np.float64),
                    "r2": np.full(2 * n, r2, dtype=np.float64),
                }
            )
        )
    return pl.concat(parts)


def fig8_plot(data: pl.DataFrame, style: ReportStyle = DEFAULT_STYLE) -> Any:
    from omnifuse.report.figures import _colors, _pyplot

    plt = _pyplot(style)
    modalities = list(dict.fromkeys(data["modality"].to_list()))
    fig, axes = plt.subplots(1, len(modalities), figsize=(style.fig_width, style.fig_height), squeeze=False)
    colors = _colors(style, 2)
    for ax, m in zip(axes[0], modalities, strict=True):
        part = data.filter(pl.col("modality") == m)
        for color, kind in zip(colors, ("true", "imputed"), strict=True):
            s = part.filter(pl.col("kind") == kind)
            ax.scatter(s["tsne_1"], s["tsne_2"], s=style.marker_size**2 / 2, color=color, alpha=0.7,
                       label=kind, linewidths=0)  # fmt: skip
        true = part.filter(pl.col("kind") == "true")
        ax.set_title(f"{m} (mean cos {float(true['cosine'].mean()):.2f}, R² {float(true['r2'][0]):.2f})")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(loc="best", markerscale=2)
    fig.tight_layout()
    return fig


def fig8(
    run_dir: str | Path,
    cohort: str | Path,
    caches: Mapping[str, str | Path],
    fold: int = 0,
    max_samples: int = 500,
    perplexity: float = 30.0,
    seed: int = 0,
    style: ReportStyle = DEFAULT_STYLE,
) -> tuple[Any, pl.DataFrame]:
    ids, emb = true_and_imputed(run_dir, cohort, caches, fold, max_samples)
    data = tsne_frame(ids, emb, perplexity, seed).with_columns(pl.lit(fold, dtype=pl.Int64).alias("fold"))
    return fig8_plot(data, style), data
