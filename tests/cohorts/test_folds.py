"""Patient-level, stratified, seeded folds and fixed split files."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from omnifuse.cohorts.folds import assign_folds, stratified_group_folds


def cohort(n_patients=400, seed=0, labels=25, kind="multilabel"):
    """Patients with 1-3 samples each; labels correlated within a patient."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, n_patients)
    patients = np.repeat([f"p{i}" for i in range(n_patients)], sizes)
    n = len(patients)
    data = {"sample_id": [f"s{i}" for i in range(n)], "patient_id": patients}
    if kind == "multilabel":
        prevalence = np.linspace(0.02, 0.4, labels)
        for j in range(labels):
            data[f"y_{j}"] = (rng.random(n) < prevalence[j]).astype(np.int8)
    elif kind == "binary":
        data["y_ihm"] = (rng.random(n) < 0.13).astype(np.int8)
    else:
        data["y_subtype"] = rng.choice(3, n, p=[0.3, 0.4, 0.3])
    return pl.DataFrame(data)


def test_no_patient_in_two_folds_and_sizes_balanced():
    frame = assign_folds(cohort(), [f"y_{j}" for j in range(25)], "multilabel", 5, seed=0)
    assert frame.group_by("patient_id").agg(pl.col("fold").n_unique())["fold"].max() == 1
    sizes = frame["fold"].value_counts()["count"].to_numpy()
    assert sizes.max() - sizes.min() <= 0.05 * frame.height


def test_multilabel_prevalence_is_kept_in_every_fold():
    columns = [f"y_{j}" for j in range(25)]
    frame = assign_folds(cohort(), columns, "multilabel", 5, seed=0)
    overall = frame.select(columns).mean().row(0)
    per_fold = frame.group_by("fold").agg(pl.col(columns).sum())
    for j, col in enumerate(columns):
        positives = frame[col].sum()
        # iterative stratification: each fold holds a fifth of every label's positives (within 10 % or 2)
        deviation = abs(per_fold[col].to_numpy() - positives / 5)
        assert (deviation <= max(2, 0.1 * positives / 5)).all(), (col, overall[j], deviation)


@pytest.mark.parametrize(("kind", "col", "classes"), [("binary", "y_ihm", 2), ("multiclass", "y_subtype", 3)])
def test_class_balance(kind, col, classes):
    frame = assign_folds(cohort(kind=kind), [col], kind, 5, seed=1, n_classes=classes)
    table = frame.group_by("fold").agg([(pl.col(col) == k).sum().alias(str(k)) for k in range(classes)])
    for k in range(classes):
        counts = table[str(k)].to_numpy()
        assert counts.max() - counts.min() <= 3, (k, counts)


def test_seeded_and_deterministic():
    frame = cohort(kind="binary")
    a = assign_folds(frame, ["y_ihm"], "binary", 5, seed=3)["fold"]
    b = assign_folds(frame, ["y_ihm"], "binary", 5, seed=3)["fold"]
    c = assign_folds(frame, ["y_ihm"], "binary", 5, seed=4)["fold"]
    assert a.equals(b) and not a.equals(c)


def test_too_few_patients():
    with pytest.raises(ValueError, match="3 patient"):
        stratified_group_folds(["a", "b", "c"], np.eye(2, dtype=int)[[0, 1, 0]], 5, 0)


def test_split_file_by_patient_or_sample(tmp_path):
    frame = pl.DataFrame({"sample_id": ["1", "2", "3"], "patient_id": ["a", "a", "b"], "y_ihm": [0, 1, 0]})
    path = tmp_path / "split.csv"
    path.write_text("subject_id,fold\na,1\nb,0\nz,2\n")
    assert assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)["fold"].to_list() == [1, 1, 0]
    path.write_text("stay_id,fold\n1,2\n2,2\n3,0\n")
    assert assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)["fold"].to_list() == [2, 2, 0]
    path.write_text("stay_id,fold\n1,2\n2,2\n")
    with pytest.raises(ValueError, match=r"1 cohort sample\(s\) have no fold, e.g. sample_id '3'"):
        assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)
    path.write_text("stay_id,fold\n1,7\n")
    with pytest.raises(ValueError, match=r"fold '7' of stay_id 1 is not in 0\.\.2"):
        assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)
    path.write_text("hadm_id,fold\n1,0\n")
    with pytest.raises(ValueError, match="needs a 'fold' column and one of the id columns"):
        assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)


def test_a_sample_keyed_split_that_splits_a_patient_is_rejected_naming_the_patient(tmp_path):
    frame = pl.DataFrame({"sample_id": ["1", "2", "3"], "patient_id": ["a", "a", "b"], "y_ihm": [0, 1, 0]})
    path = tmp_path / "split.csv"
    path.write_text("stay_id,fold\n1,2\n2,1\n3,0\n")
    with pytest.raises(ValueError, match=r"patient 'a' has samples in folds \[1, 2\]"):
        assign_folds(frame, ["y_ihm"], "binary", 3, split_file=path)
