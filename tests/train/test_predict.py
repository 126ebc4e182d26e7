"""Checkpoints and prediction: round trip (weights_only), the per-modality view, any missing pattern,
and the ``omnifuse train`` / ``omnifuse predict`` commands."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest
import torch

from omnifuse.cli import main
from omnifuse.formats.cache import read_cache, write_cache
from omnifuse.formats.checkpoint import load_checkpoint, model_from_checkpoint
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train
from omnifuse.train.predict import predict

OVERRIDES = [
    "train.threads=1",
    "train.max_epochs=3",
    "train.batch_size=32",
    "method.d=16",
    "method.ehr_hidden=16",
    "method.attn_hidden=8",
    "method.cra_hidden=32",
    "method.cra_latent=8",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pred")
    spec = ToySpec(
        n=150, kind="multiclass", n_labels=3, shapes={"ehr": (8, 76), "cxr": (1, 12), "rep": (6, 10)}
    )
    cohort, caches = make_toy_run(root / "data", spec)
    torch.set_num_threads(1)
    train(cohort, caches, "omnifuse", out_dir=root / "run", folds=[0], overrides=OVERRIDES)
    return root, cohort, caches


def test_checkpoint_round_trip_reproduces_the_test_predictions(trained):
    root, cohort, caches = trained
    path = root / "run" / "fold0" / "checkpoint.pt"
    raw = torch.load(path, weights_only=True)  # plain tensors and containers only
    assert raw["method"] == "omnifuse" and raw["spec"]["modalities"] == ["ehr", "cxr", "rep"]
    assert raw["method_config"]["k"] == 5 and raw["normalizers"]["ehr"]["name"] == "ehr_zscore"
    model = model_from_checkpoint(load_checkpoint(path))
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for k, v in raw["state_dict"].items())
    fold = pl.read_parquet(root / "run" / "fold0" / "predictions.parquet")
    table = predict(path, caches, cohort=cohort)
    joined = fold.join(table, on="sample_id", suffix="_p")
    assert joined.height == fold.height
    for c in ("L1", "L2", "L3"):
        np.testing.assert_allclose(joined[f"y_score_{c}"], joined[f"y_score_{c}_p"], rtol=1e-5, atol=1e-6)
    assert (joined["y_true"] == joined["y_true_p"]).all()


def test_predict_reports_heads_and_imputed_modalities_for_any_pattern(trained, tmp_path):
    root, _, caches = trained
    path = root / "run" / "fold0" / "checkpoint.pt"
    cxr = read_cache(caches["cxr"])
    cxr.present[::2] = False  # every other sample lacks its X-ray
    cxr.data[::2] = 0
    cxr.mask[::2] = False
    write_cache(tmp_path / "cxr.h5", cxr)
    table = predict(path, {"ehr": caches["ehr"], "cxr": tmp_path / "cxr.h5"}, out=tmp_path / "p.parquet")
    assert table.height == 150 and "y_true" not in table.columns  # no cohort: no labels
    even = table["sample_id"].is_in(list(cxr.ids[::2]))
    assert (~table.filter(even)["observed_cxr"]).all() and table.filter(even)["imputed_cxr"].all()
    assert table.filter(~even)["observed_cxr"].all()
    assert table["imputed_rep"].all()  # no rep cache: missing for everybody, imputed
    probs = table.select([f"y_score_L{j}" for j in (1, 2, 3)]).to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    for m in ("ehr", "cxr", "rep"):  # each modality head's probability (imputed slots included)
        heads = table.select([f"head_{m}_y_score_L{j}" for j in (1, 2, 3)]).to_numpy()
        assert np.isfinite(heads).all()
        np.testing.assert_allclose(heads.sum(1), 1.0, rtol=1e-5)
    assert pl.read_parquet(tmp_path / "p.parquet").equals(table)


def test_predict_refuses_wrong_inputs(trained, tmp_path):
    root = trained[0]
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad\.pt: no recorded sha256"):
        load_checkpoint(tmp_path / "bad.pt")
    digest = hashlib.sha256((tmp_path / "bad.pt").read_bytes()).hexdigest()
    (tmp_path / "bad.pt.sha256").write_text(f"{digest}  bad.pt\n")
    with pytest.raises(ValueError, match="not an omnifuse checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="no samples"):
        predict(root / "run" / "fold0" / "checkpoint.pt", {})


def test_cli_train_and_predict(trained, tmp_path, capsys):
    _, cohort, caches = trained
    args = [
        "train",
        "--cohort",
        str(cohort),
        *[a for m, p in caches.items() for a in ("--cache", f"{m}={p}")],
        "--method",
        "omnifuse",
        "--ablation",
        "b",
        "--combo",
        "ehr+cxr",
        "--folds",
        "1",
        "--out",
        str(tmp_path / "run"),
        *OVERRIDES,
    ]
    assert main(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["combo"] == "ehr+cxr" and line["folds"] == [1] and 0 <= line["auroc"]["mean"] <= 1
    ckpt = load_checkpoint(tmp_path / "run" / "fold1" / "checkpoint.pt")
    assert ckpt["method_config"]["dwfuse"] and not ckpt["method_config"]["imp_fw"]  # row (b)
    assert ckpt["spec"]["modalities"] == ["ehr", "cxr"]
    out = tmp_path / "pred.parquet"
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(tmp_path / "run" / "fold1" / "checkpoint.pt"),
                "--cache",
                f"ehr={caches['ehr']}",
                "--cohort",
                str(cohort),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pl.read_parquet(out)
    assert table.height == 150 and not table["observed_cxr"].any() and not table["imputed_cxr"].any()
    assert table["head_cxr_y_score_L1"].is_nan().all()  # no imputation in row (b): the head has no input
    assert (
        main(
            [
                "train",
                "--cohort",
                str(cohort),
                "--cache",
                f"ehr={caches['ehr']}",
                "--out",
                str(tmp_path / "x"),
                "train.max_epochs=oops",
            ]
        )
        == 2
    )
    (tmp_path / "cfg.yaml").write_text(
        "train:\n  max_epochs: 1\n  threads: 1\nmethod:\n  d: 8\n  ehr_hidden: 8\n"
    )
    assert (
        main(
            [
                "train",
                "--cohort",
                str(cohort),
                "--cache",
                f"ehr={caches['ehr']}",
                "--method",
                "concat",
                "--folds",
                "0",
                "--config",
                str(tmp_path / "cfg.yaml"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "y" / "summary.json").read_text())
    assert summary["config"]["train"]["max_epochs"] == 1 and summary["config"]["method_config"]["d"] == 8
