"""Figure 8 end to end: a tiny OmniFuse trained on planted caches, then t-SNE of true vs imputed
embeddings of fold 0's test samples from its checkpoint."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from omnifuse.cli import main
from omnifuse.report.collect import ReportError
from omnifuse.report.embeddings import centred_r2, select_rows, true_and_imputed, tsne_frame
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train

SPEC = ToySpec(n=120, kind="multilabel", n_labels=3, shapes={"ehr": (6, 8), "cxr": (1, 16), "rep": (4, 12)},
               n_folds=2, seed=5, noise=0.3)  # fmt: skip
SMALL = [
    "train.threads=1", "train.batch_size=32", "train.max_epochs=2", "train.patience=2",
    "method.d=16", "method.ehr_hidden=16", "method.attn_hidden=8", "method.cra_hidden=16",
    "method.cra_latent=8", "method.k=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fig8")
    cohort, caches = make_toy_run(root / "data", SPEC)
    run_dir = root / "results" / "toy" / "runs" / "pheno" / "omnifuse" / "ehr+cxr+rep" / "complete"
    before = torch.get_num_threads()
    try:
        train(cohort, caches, "omnifuse", out_dir=run_dir, overrides=SMALL)
    finally:
        torch.set_num_threads(before)
    return cohort, caches, run_dir


def test_select_rows_is_capped_evenly_in_id_order():
    ids = np.array([f"s{i:03d}" for i in range(10)])[::-1]
    rows = select_rows(ids, np.ones(10, bool), 4)
    assert [ids[r] for r in rows] == ["s000", "s003", "s006", "s009"]


def test_tsne_is_deterministic():
    rng = np.random.default_rng(0)
    emb = {"cxr": (rng.normal(size=(20, 6)), rng.normal(size=(20, 6)))}
    ids = np.array([f"s{i}" for i in range(20)])
    first = tsne_frame(ids, emb, perplexity=5)
    assert first.equals(tsne_frame(ids, emb, perplexity=5))
    assert first["kind"].to_list() == ["true"] * 20 + ["imputed"] * 20


def test_centred_r2_is_zero_for_the_mean_and_one_for_exact_imputation():
    rng = np.random.default_rng(0)
    true = 5.0 + rng.normal(size=(50, 8))  # a large shared component: cosine near 1 for the mean
    mean = np.repeat(true.mean(0, keepdims=True), 50, axis=0)
    assert centred_r2(true, true) == 1.0
    assert abs(centred_r2(true, mean)) < 1e-12
    cos = (true * mean).sum(1) / (np.linalg.norm(true, axis=1) * np.linalg.norm(mean, axis=1))
    assert cos.mean() > 0.9


def test_true_and_imputed_embeddings_of_test_samples(trained):
    cohort, caches, run_dir = trained
    ids, emb = true_and_imputed(run_dir, cohort, caches, fold=0, max_samples=30)
    folds = dict(zip(*pl.read_parquet(cohort).select("sample_id", "fold").to_dict().values(), strict=True))
    assert len(ids) == 30 and all(folds[i] == 0 for i in ids)
    assert list(emb) == ["ehr", "cxr", "rep"]
    for true, imputed in emb.values():
        assert true.shape == imputed.shape == (30, 16)
        assert not np.allclose(true, imputed)


def test_cli_fig8_writes_figure_and_points(trained, tmp_path):
    cohort, caches, run_dir = trained
    out = tmp_path / "fig8.png"
    args = ["report", "fig8", "--run", str(run_dir), "--cohort", str(cohort), "--out", str(out),
            "--max-samples", "25", "--perplexity", "5", "--dpi", "60",
            *[f"--cache={m}={p}" for m, p in caches.items()]]  # fmt: skip
    assert main(args) == 0
    assert out.exists() and out.with_suffix(".pdf").exists()
    tidy = pl.read_csv(tmp_path / "fig8.tidy.csv")
    assert len(tidy) == 3 * 2 * 25
    assert set(tidy["kind"]) == {"true", "imputed"} and tidy["fold"].unique().to_list() == [0]


def test_fig8_needs_an_imputing_omnifuse_checkpoint(trained, tmp_path):
    cohort, caches, _ = trained
    run_dir = tmp_path / "results" / "toy" / "runs" / "pheno" / "concat" / "ehr+cxr" / "complete"
    train(cohort, caches, "concat", combo="ehr+cxr", out_dir=run_dir, folds=[0], overrides=SMALL[:4])
    with pytest.raises(ReportError, match="forward imputation"):
        true_and_imputed(run_dir, cohort, caches)
    with pytest.raises(ReportError, match=r"fold1/checkpoint\.pt: missing"):
        true_and_imputed(run_dir, cohort, caches, fold=1)
