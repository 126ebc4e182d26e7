"""The generic trainer end to end on small planted-signal caches: accuracy for every task kind and
M = 2, 3, 4 modalities, determinism, early stopping with best-checkpoint restore, run outputs, the
combination semantics, and the hooks that the baselines plug into."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
import torch

from omnifuse.formats.run import read_predictions
from omnifuse.methods.base import MethodConfig, ModelOutput
from omnifuse.methods.registry import METHODS, Concat
from omnifuse.metrics import auroc
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train
from omnifuse.train.loop import predict_rows

FAST = ["train.threads=1", "train.batch_size=32"]
SMALL = ["method.d=32", "method.ehr_hidden=32", "method.attn_hidden=16"]
OMNI_SMALL = [*SMALL, "method.cra_hidden=64", "method.cra_latent=16"]


pytestmark = pytest.mark.usefixtures("one_thread")


CASES = {
    "binary-M2": ToySpec(n=240, kind="binary", shapes={"cxr": (1, 32), "rep": (12, 24)}, seed=1, noise=0.3),
    "multilabel-M3": ToySpec(
        n=240,
        kind="multilabel",
        n_labels=4,
        shapes={"ehr": (24, 76), "cxr": (1, 32), "rep": (12, 24)},
        seed=2,
        noise=0.3,
    ),
    "multiclass-M4": ToySpec(
        n=300,
        kind="multiclass",
        n_labels=3,
        shapes={"ct": (6, 32), "pet": (4, 16), "rep": (10, 24), "cxr": (1, 32)},
        seed=3,
        noise=0.3,
    ),
}


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return {name: make_toy_run(root / name, spec) for name, spec in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["omnifuse", "concat"])
def test_tiny_training_on_separable_data_reaches_high_auroc(toy_runs, case, method, tmp_path):
    cohort, caches = toy_runs[case]
    summary = train(
        cohort,
        caches,
        method,
        out_dir=tmp_path / "run",
        folds=[0],
        overrides=[
            *FAST,
            *(OMNI_SMALL if method == "omnifuse" else SMALL),
            "train.max_epochs=12",
            "train.patience=4",
            "train.lr=3e-3",
        ],
    )
    assert summary["auroc"]["mean"] > 0.95, summary["auroc"]
    _, info, y_true, y_score = read_predictions(tmp_path / "run" / "fold0" / "predictions.parquet")
    assert info["kind"] == CASES[case].kind
    assert auroc(y_true, y_score, info["kind"]) == pytest.approx(summary["auroc"]["mean"])


def _run(cohort, caches, out, method="omnifuse", extra=(), folds=(0,)):
    return train(
        cohort,
        caches,
        method,
        out_dir=out,
        folds=list(folds),
        overrides=[*FAST, *(OMNI_SMALL if method == "omnifuse" else SMALL), "train.max_epochs=3", *extra],
    )


def test_same_config_and_seed_give_identical_outputs(toy_runs, tmp_path):
    cohort, caches = toy_runs["multilabel-M3"]
    _run(cohort, caches, tmp_path / "a")
    _run(cohort, caches, tmp_path / "b")
    a = pl.read_parquet(tmp_path / "a" / "fold0" / "predictions.parquet")
    b = pl.read_parquet(tmp_path / "b" / "fold0" / "predictions.parquet")
    assert a.equals(b)
    ha = pl.read_parquet(tmp_path / "a" / "fold0" / "history.parquet").drop(pl.selectors.starts_with("time_"))
    hb = pl.read_parquet(tmp_path / "b" / "fold0" / "history.parquet").drop(pl.selectors.starts_with("time_"))
    assert ha.equals(hb)
    _run(cohort, caches, tmp_path / "c", extra=["train.seed=1"])
    c = pl.read_parquet(tmp_path / "c" / "fold0" / "predictions.parquet")
    assert not a.equals(c)


def test_run_outputs_and_history(toy_runs, tmp_path):
    cohort, caches = toy_runs["multilabel-M3"]
    summary = _run(cohort, caches, tmp_path, folds=(0, 1))
    for k in (0, 1):
        fold = tmp_path / f"fold{k}"
        assert {p.name for p in fold.iterdir()} == {
            "predictions.parquet",
            "metrics.json",
            "history.parquet",
            "checkpoint.pt",
            "checkpoint.pt.sha256",
        }
        metrics = json.loads((fold / "metrics.json").read_text())
        assert (
            metrics["fold"] == k
            and 0 < metrics["auroc"] <= 1
            and set(metrics["per_label_auroc"]) == {"pheno0", "pheno1", "pheno2", "pheno3"}
        )
        assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 240
        preds = pl.read_parquet(fold / "predictions.parquet")
        assert (preds["fold"] == k).all() and preds.height == metrics["n_test"]
        assert {f"y_true_pheno{j}" for j in range(4)} | {f"y_score_pheno{j}" for j in range(4)} <= set(
            preds.columns
        )
        assert {"observed_ehr", "imputed_ehr", "sample_id", "patient_id"} <= set(preds.columns)
        hist = pl.read_parquet(fold / "history.parquet")
        assert hist.height == metrics["epochs_run"] == 3
        for col in (
            "loss_forward",
            "loss_backward",
            "loss_enc",
            "loss_ra",
            "loss_tla",
            "loss_total",
            "val_auroc",
            "val_auprc",
            "val_loss",
            "lazy",
            "imp_cos",
            "imp_cos_ehr",
            "time_tla_s",
        ):
            assert col in hist.columns, col
        assert hist["lazy"].str.len_chars().min() > 0
        assert hist["loss_tla"][0] == 0.0 and hist["loss_tla"][1] > 0  # L_TLA starts after the first mining
        assert hist["imp_cos"].is_between(-1, 1).all()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["folds"] == [0, 1] and saved["auroc"]["mean"] == pytest.approx(summary["auroc"]["mean"])
    assert saved["config"]["method_config"]["lambda2"] == 10.0


def test_early_stopping_restores_the_best_epoch(toy_runs, tmp_path):
    cohort, caches = toy_runs["binary-M2"]
    summary = train(
        cohort,
        caches,
        "concat",
        folds=[1],
        overrides=[*FAST, *SMALL, "train.max_epochs=40", "train.patience=3", "train.lr=2e-2"],
    )
    result = summary["results"][0]
    hist = result.history
    best = max(range(len(hist)), key=lambda i: (hist[i]["val_auroc"], -i))
    assert result.metrics["best_epoch"] == best + 1
    assert len(hist) == min(40, best + 1 + 3)
    ctx = result.context
    pred = predict_rows(result.model, ctx, ctx.val_idx)
    y = ctx.data.y[ctx.val_idx].numpy()[:, 0]
    assert auroc(y, pred.probs[:, 0]) == pytest.approx(hist[best]["val_auroc"], abs=1e-12)


def test_inner_validation_and_test_are_patient_disjoint(toy_runs):
    cohort, caches = toy_runs["binary-M2"]
    result = train(cohort, caches, "concat", folds=[2], overrides=[*FAST, *SMALL, "train.max_epochs=1"])[
        "results"
    ][0]
    ctx = result.context
    pats = ctx.data.patients
    sets = {name: set(pats[getattr(ctx, name).numpy()]) for name in ("train_idx", "val_idx", "test_idx")}
    assert not sets["train_idx"] & sets["val_idx"] and not sets["train_idx"] & sets["test_idx"]
    assert not sets["val_idx"] & sets["test_idx"]
    assert (ctx.data.folds[ctx.test_idx.numpy()] == 2).all()
    n_pool = len(ctx.train_idx) + len(ctx.val_idx)
    assert 0.05 < len(ctx.val_idx) / n_pool < 0.2
    assert set(ctx.data.y[ctx.val_idx].numpy()[:, 0]) == {0.0, 1.0}


def test_combination_semantics(toy_runs, tmp_path):
    cohort, caches = toy_runs["multilabel-M3"]
    omni = _run(cohort, caches, tmp_path / "o", extra=[], folds=(0,))
    spec = omni["results"][0].model.spec
    assert spec.modalities == ("ehr", "cxr", "rep") and spec.inputs == ("ehr", "cxr", "rep")
    sub = train(
        cohort,
        caches,
        "omnifuse",
        combo="cxr+rep",
        out_dir=tmp_path / "s",
        folds=[0],
        overrides=[*FAST, *OMNI_SMALL, "train.max_epochs=2"],
    )
    model = sub["results"][0].model
    assert model.spec.modalities == ("ehr", "cxr", "rep") and model.spec.inputs == ("cxr", "rep")
    preds = pl.read_parquet(tmp_path / "s" / "fold0" / "predictions.parquet")
    assert not preds["observed_ehr"].any() and preds["imputed_ehr"].all()  # imputed from cxr+rep at test time
    hist = pl.read_parquet(tmp_path / "s" / "fold0" / "history.parquet")
    assert hist["imp_cos_ehr"].is_not_null().all()
    assert set(hist["lazy"]) <= {"cxr", "rep", "cxr+rep"}
    base = train(
        cohort, caches, "concat", combo="rep+cxr", folds=[0], overrides=[*FAST, *SMALL, "train.max_epochs=1"]
    )
    assert base["results"][0].model.spec.modalities == ("cxr", "rep")  # baselines ignore the others
    no_imp = train(
        cohort,
        caches,
        "omnifuse",
        combo="cxr+rep",
        folds=[0],
        overrides=[*FAST, *OMNI_SMALL, "train.max_epochs=1", "method.imp_fw=false", "method.imp_bw=false"],
    )
    assert no_imp["results"][0].model.spec.modalities == ("cxr", "rep")
    with pytest.raises(ValueError, match="no cache was given for \\['ct'\\]"):
        train(cohort, caches, "concat", combo="cxr+ct", folds=[0])


def test_cohort_modes(tmp_path):
    spec = ToySpec(
        n=200, shapes={"cxr": (1, 8), "rep": (5, 6)}, availability={"cxr": 0.6, "rep": 0.7}, seed=4
    )
    cohort, caches = make_toy_run(tmp_path, spec)
    frame = pl.read_parquet(cohort)
    both = int((frame["has_cxr"] & frame["has_rep"]).sum())
    paired = train(cohort, caches, "concat", folds=[0], overrides=[*FAST, *SMALL, "train.max_epochs=1"])
    assert len(paired["results"][0].context.data) == both
    assert paired["results"][0].context.data.observed.all()
    every = train(
        cohort,
        caches,
        "concat",
        folds=[0],
        overrides=[*FAST, *SMALL, "train.max_epochs=1", "train.cohort_mode=all"],
    )
    data = every["results"][0].context.data
    assert len(data) == 200 and not data.observed.all() and data.observed.any(1).all()
    only_rep = train(
        cohort,
        caches,
        "concat",
        combo="rep",
        folds=[0],
        overrides=[*FAST, *SMALL, "train.max_epochs=1", "train.cohort_mode=all"],
    )
    assert len(only_rep["results"][0].context.data) == int(frame["has_rep"].sum())


class _Recorder(Concat):
    """A baseline-like method exercising every hook: a held-out slice (G-Blend), epoch hooks (TLA/PMR/
    G-Blend), and a post-backward gradient hook (OGM-GE) that zeroes the rep encoder's gradients."""

    name = "recorder"
    Config = MethodConfig
    calls: ClassVar[list] = []

    @property
    def holdout_fraction(self) -> float:
        return 0.2

    def on_fit_start(self, ctx):
        type(self).calls.append(("fit_start", len(ctx.holdout_idx)))
        self.initial_rep = [p.detach().clone() for p in self.encoder_parameters("rep")]

    def on_epoch_start(self, ctx):
        type(self).calls.append(("epoch_start", ctx.epoch))

    def after_backward(self, batch, output, ctx):
        assert output.loss.grad_fn is not None and all(
            p.grad is not None for p in self.encoder_parameters("cxr")
        )
        for p in self.encoder_parameters("rep"):
            p.grad.zero_()
        type(self).calls.append(("after_backward", ctx.epoch))

    def on_epoch_end(self, ctx):
        n = sum(len(b) for b in ctx.batches(ctx.holdout_idx, targets=False))
        type(self).calls.append(("epoch_end", ctx.epoch))
        return {"holdout_seen": n, "note": "ok"}

    def forward(self, batch) -> ModelOutput:
        out = super().forward(batch)
        return out


def test_method_hooks_run_where_the_baselines_need_them(toy_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "recorder", _Recorder)
    _Recorder.calls = []
    cohort, caches = toy_runs["binary-M2"]
    summary = train(
        cohort,
        caches,
        "recorder",
        out_dir=tmp_path,
        folds=[0],
        overrides=[*FAST, *SMALL, "train.max_epochs=2", "train.patience=5"],
    )
    result = summary["results"][0]
    ctx = result.context
    calls = _Recorder.calls
    assert calls[0] == ("fit_start", len(ctx.holdout_idx)) and len(ctx.holdout_idx) > 0
    kinds = [c[0] for c in calls]
    assert kinds.count("epoch_start") == kinds.count("epoch_end") == 2
    n_batches = -(-len(ctx.train_idx) // 32)
    assert kinds.count("after_backward") == 2 * n_batches
    pats = ctx.data.patients
    held = set(pats[ctx.holdout_idx.numpy()])
    assert not held & set(pats[ctx.train_idx.numpy()]) and not held & set(pats[ctx.val_idx.numpy()])
    for before, after in zip(result.model.initial_rep, result.model.encoder_parameters("rep"), strict=True):
        torch.testing.assert_close(before, after)  # gradients zeroed after backward: never stepped
    hist = pl.read_parquet(tmp_path / "fold0" / "history.parquet")
    assert (hist["holdout_seen"] == len(ctx.holdout_idx)).all() and (hist["note"] == "ok").all()
    assert result.metrics["n_holdout"] == len(ctx.holdout_idx)


def test_simulated_missingness_reaches_train_and_test(toy_runs, tmp_path):
    cohort, caches = toy_runs["multilabel-M3"]
    summary = _run(cohort, caches, tmp_path, extra=["train.missing_rate=0.5", "train.missing_modality=cxr"])
    preds = pl.read_parquet(tmp_path / "fold0" / "predictions.parquet")
    frac = 1 - preds["observed_cxr"].mean()
    assert 0.3 < frac < 0.7
    assert (preds["imputed_cxr"] == ~preds["observed_cxr"]).all()
    assert preds.select(pl.any_horizontal(pl.col("^observed_.*$"))).to_series().all()
    data = summary["results"][0].context.data
    assert (data.present[:, 1] & data.dropped[:, 1]).sum() > 0  # dropped stays a (training) target


def test_bad_configuration_is_refused(toy_runs):
    cohort, caches = toy_runs["binary-M2"]
    with pytest.raises(ValueError, match="unknown config key 'lr_max'"):
        train(cohort, caches, "concat", overrides=["lr_max=1"])
    with pytest.raises(ValueError, match=r"missing_rate must be in \[0, 0.9\]"):
        train(cohort, caches, "concat", overrides=["train.missing_rate=0.95"])
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        train(cohort, caches, "nope")
    with pytest.raises(ValueError, match="folds \\[7\\]"):
        train(cohort, caches, "concat", folds=[7])
    with pytest.raises(ValueError, match="caches given for \\['ct'\\]"):
        train(cohort, {**caches, "ct": caches["cxr"]}, "concat")


def test_fold_result_arrays_line_up(toy_runs):
    cohort, caches = toy_runs["multiclass-M4"]
    res = train(cohort, caches, "concat", folds=[3], overrides=[*FAST, *SMALL, "train.max_epochs=1"])[
        "results"
    ][0]
    assert res.predictions.probs.shape == (len(res.context.test_idx), 3)
    np.testing.assert_allclose(res.predictions.probs.sum(1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_parallel_folds_give_the_sequential_results(toy_runs, tmp_path):
    """Three folds on two workers: one worker trains two folds on the data it loaded once."""
    cohort, caches = toy_runs["binary-M2"]
    extra = [*FAST, *OMNI_SMALL, "train.max_epochs=2"]
    folds = [0, 1, 2]
    train(cohort, caches, "omnifuse", out_dir=tmp_path / "seq", folds=folds, overrides=extra)
    summary = train(
        cohort, caches, "omnifuse", out_dir=tmp_path / "par", folds=folds, overrides=extra, workers=2
    )
    assert summary["folds"] == folds and summary["results"] == []
    for k in folds:
        a = pl.read_parquet(tmp_path / "seq" / f"fold{k}" / "predictions.parquet")
        b = pl.read_parquet(tmp_path / "par" / f"fold{k}" / "predictions.parquet")
        assert a.equals(b)


def test_parallel_folds_report_a_bad_fold_and_stop_their_workers(toy_runs, tmp_path):
    cohort, caches = toy_runs["binary-M2"]
    with pytest.raises(ValueError, match=r"folds \[9\] are outside"):
        train(cohort, caches, "concat", out_dir=tmp_path / "run", folds=[0, 9], overrides=FAST, workers=2)
    assert not (tmp_path / "run").exists()


def test_train_help_lists_every_registered_method_and_ablation(capsys):
    """The CLI keeps torch out of `omnifuse --help`, so its method list is text: keep it in sync."""
    from omnifuse.cli import main
    from omnifuse.methods import ABLATIONS
    from omnifuse.methods.registry import METHODS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in METHODS:
        assert name in text, name
    assert "{" + ",".join(sorted(ABLATIONS)) + "}" in text


def test_train_command_ends_without_teardown_yet_loses_no_output(tmp_path):
    """``omnifuse train`` leaves by ``os._exit`` (cli.FAST_EXIT): its result line, written to a file
    (as the workflow redirects it), its log and every fold's outputs are complete; errors keep status 2."""
    import os
    import subprocess
    import sys

    cohort, caches = make_toy_run(tmp_path / "toy", ToySpec(n=120, shapes={"cxr": (1, 16)}, seed=3))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "omnifuse", "train", "--cohort", str(cohort), "--method", "concat",
           "--cache", f"cxr={caches['cxr']}", "--out", str(out), "--folds", "0", "1",
           *FAST, "train.max_epochs=2", *SMALL]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout to a file: buffered
    with open(tmp_path / "stdout", "w") as stdout, open(tmp_path / "stderr", "w") as stderr:
        done = subprocess.run(cmd, stdout=stdout, stderr=stderr, env=env, check=False)
    assert done.returncode == 0, (tmp_path / "stderr").read_text()
    line = json.loads((tmp_path / "stdout").read_text())
    assert line["folds"] == [0, 1]
    assert f"wrote {out / 'fold1'}" in (tmp_path / "stderr").read_text()
    assert json.loads((out / "summary.json").read_text())["auroc"] == line["auroc"]
    for k in (0, 1):
        assert len(pl.read_parquet(out / f"fold{k}" / "predictions.parquet")) > 0
        assert torch.load(out / f"fold{k}" / "checkpoint.pt", weights_only=False)["fold"] == k
    missing = [f"cxr={tmp_path / 'missing.h5'}" if a == f"cxr={caches['cxr']}" else a for a in cmd]
    bad = subprocess.run(missing, capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "missing.h5" in bad.stderr
