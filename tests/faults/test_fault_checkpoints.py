"""Fault injection, checkpoints: changed, truncated, zeroed or unhashed checkpoints are refused by
``omnifuse predict`` with one line naming the file; nothing is written."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from omnifuse.formats.checkpoint import CheckpointError, from_bytes, load_checkpoint
from omnifuse.synth.toy import ToySpec, make_toy_run
from omnifuse.train import train
from tests.faults.common import assert_fails, flip_bytes, run_cli, truncate

OVERRIDES = ["train.threads=1", "train.max_epochs=2", "method.d=8", "method.ehr_hidden=8"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    cohort, caches = make_toy_run(root / "data", ToySpec(n=80, shapes={"ehr": (4, 76), "cxr": (1, 8)}))
    torch.set_num_threads(1)
    train(cohort, caches, "concat", out_dir=root / "run", folds=[0], overrides=OVERRIDES)
    return root, cohort, caches


def predict_args(checkpoint, cohort, caches, out):
    return ["predict", "--checkpoint", checkpoint, "--cohort", cohort,
            *[a for m, p in caches.items() for a in ("--cache", f"{m}={p}")], "--out", out]  # fmt: skip


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the run directory to damage."""
    root, cohort, caches = run
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run" / "fold0" / "checkpoint.pt", cohort, caches


def test_the_intact_checkpoint_predicts_and_its_hash_is_recorded(copy, tmp_path, caplog):
    ckpt, cohort, caches = copy
    assert run_cli(predict_args(ckpt, cohort, caches, tmp_path / "p.parquet"), caplog)[0] == 0
    digest = ckpt.with_name("checkpoint.pt.sha256").read_text().split()[0]
    summary = json.loads((ckpt.parent.parent / "summary.json").read_text())
    assert summary["checkpoint_sha256"] == [digest]
    assert json.loads((ckpt.parent / "metrics.json").read_text())["checkpoint_sha256"] == digest


def test_64_changed_bytes_are_refused_not_scored(copy, tmp_path, caplog):
    ckpt, cohort, caches = copy
    flip_bytes(ckpt, 64)  # before: loaded, every score 1.0, exit 0
    out = tmp_path / "p.parquet"
    text = assert_fails(predict_args(ckpt, cohort, caches, out), caplog, ckpt, "sha256", absent=[out])
    assert "differs from the recorded" in text


@pytest.mark.parametrize("damage", ["truncated", "zeroed", "no sidecar", "summary disagrees"])
def test_damaged_checkpoints_name_the_file(copy, tmp_path, caplog, damage):
    ckpt, cohort, caches = copy
    side = ckpt.with_name("checkpoint.pt.sha256")
    if damage == "truncated":
        truncate(ckpt)
    elif damage == "zeroed":
        ckpt.write_bytes(b"\0" * ckpt.stat().st_size)
    elif damage == "no sidecar":
        side.unlink()
    else:  # the file and its sidecar were replaced together; summary.json still lists the original
        other = tmp_path / "other.pt"
        torch.save(torch.load(ckpt, weights_only=True) | {"best_epoch": 99}, other)
        shutil.copy(other, ckpt)
        side.write_text(f"{hashlib.sha256(ckpt.read_bytes()).hexdigest()}  checkpoint.pt\n")
    out = tmp_path / "p.parquet"
    names = {"no sidecar": [ckpt, "no recorded sha256"], "summary disagrees": [ckpt, "summary.json"]}
    assert_fails(predict_args(ckpt, cohort, caches, out), caplog, *names.get(damage, [ckpt]), absent=[out])


def test_unverified_bytes_still_get_a_clear_error_instead_of_torchs_legacy_tar_text(copy):
    ckpt = copy[0]
    for data, word in ((b"\0" * 4096, "no zip archive"), (ckpt.read_bytes()[:-100], "no zip archive")):
        with pytest.raises(CheckpointError, match=rf"x\.pt: not a torch checkpoint \({word}"):
            from_bytes(data, "x.pt")
    assert load_checkpoint(ckpt)["format"] == "omnifuse-checkpoint-1"
