"""The command line: `omnifuse ehr extract|features|export-episodes` and `omnifuse cohort`."""

from __future__ import annotations

import csv

import pytest

from omnifuse.cli import main
from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.formats.cache import read_cache
from omnifuse.formats.cohort import read_cohort
from tests.helpers import chart, default_chart, mini_hospital, ts

SPEC = channel_spec()


@pytest.fixture(scope="module")
def hospital(tmp_path_factory):
    rows = [
        *default_chart(),
        chart(1, 11, 101, ts(0.45), 223835, 35),  # FiO2 at 27 min
        chart(1, 11, 101, ts(2.0), 220739, 3, "To Speech"),
        chart(1, 11, 101, ts(2.0), 223761, 98.6),
        chart(1, 11, 101, ts(50.0), 220045, 99),  # outside the ihm window, inside the stay
    ]
    return mini_hospital(tmp_path_factory.mktemp("cli") / "mimic-iv", chart_rows=rows)


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_export_episodes_ihm(hospital, tmp_path):
    out = tmp_path / "episodes"
    assert main(["ehr", "export-episodes", "--source", str(hospital), "--task", "ihm", "--out", str(out),
                 "--n-folds", "2"]) == 0  # fmt: skip
    listing = read_csv(out / "listfile.csv")
    assert listing[0] == ["stay", "y_true"]
    stays = {row[0]: row[1] for row in listing[1:]}
    expected = {101: "0", 107: "0", 108: "1", 110: "0", 111: "0", 113: "0"}
    assert stays == {f"{stay}_timeseries.csv": y for stay, y in expected.items()}
    rows = read_csv(out / "101_timeseries.csv")
    assert rows[0] == ["Hours", *SPEC.names]
    col = {name: i for i, name in enumerate(rows[0])}
    assert rows[1][0] == "0.45" and rows[1][col["Fraction inspired oxygen"]] == "0.35"
    at2 = next(r for r in rows if r[0] == "2.0")
    assert at2[col["Glascow coma scale eye opening"]] == "To Speech"
    assert float(at2[col["Temperature"]]) == pytest.approx(37.0)
    assert max(float(r[0]) for r in rows[1:]) <= 48  # the event at 50 h is outside the window
    # the output folder is replaced only on request
    assert (
        main(["ehr", "export-episodes", "--source", str(hospital), "--task", "ihm", "--out", str(out)]) == 2
    )
    assert main(["ehr", "export-episodes", "--source", str(hospital), "--task", "ihm", "--out", str(out),
                 "--n-folds", "2", "--overwrite"]) == 0  # fmt: skip


def test_export_episodes_pheno_lists_period_and_labels(hospital, tmp_path):
    out = tmp_path / "pheno"
    assert main(["ehr", "export-episodes", "--source", str(hospital), "--task", "pheno", "--out", str(out),
                 "--n-folds", "2"]) == 0  # fmt: skip
    listing = read_csv(out / "listfile.csv")
    assert listing[0][:3] == ["stay", "period_length", "Acute and unspecified renal failure"]
    assert len(listing[0]) == 27
    row = next(r for r in listing if r[0] == "101_timeseries.csv")
    assert float(row[1]) == 72.0
    rows = read_csv(out / "101_timeseries.csv")
    assert any(float(r[0]) == 50.0 for r in rows[1:])  # phenotyping observes the whole stay


def test_extract_cohort_features_commands(hospital, tmp_path):
    events, cohort, cache = tmp_path / "events.parquet", tmp_path / "ihm.parquet", tmp_path / "ehr.h5"
    assert main(["ehr", "extract", "--source", str(hospital), "--out", str(events)]) == 0
    assert events.with_suffix(".json").is_file()
    split = tmp_path / "split.csv"
    split.write_text("subject_id,fold\n" + "".join(f"{s},{s % 2}\n" for s in range(1, 11)))
    assert main(["cohort", "--dataset", "mini", "--kind", "mimic", "--task", "ihm", "--modalities", "ehr",
                 "cxr", "--ehr-path", str(hospital), "--ehr-events", str(events), "--out", str(cohort),
                 "--n-folds", "2", "--split-file", str(split)]) == 0  # fmt: skip
    frame, meta = read_cohort(cohort)
    assert frame["fold"].to_list() == [s % 2 for s in frame["subject_id"].to_list()]
    assert meta.modalities == ("ehr", "cxr") and not frame["has_cxr"].any()
    assert main(["ehr", "features", "--cohort", str(cohort), "--events", str(events), "--out", str(cache),
                 "--timestep", "1.0", "--dtype", "float16"]) == 0  # fmt: skip
    loaded = read_cache(cache, "ehr")
    assert loaded.data.shape == (frame.height, 48, 76) and loaded.data.dtype.name == "float16"
    assert list(loaded.ids) == frame["sample_id"].to_list()
    assert loaded.attrs["encoder"] == "discretizer" and loaded.attrs["weights"] == "none"
    assert '"timestep_hours": 1.0' in loaded.attrs["preprocessing"]
    # the stay without events (109) is absent: zero rows, empty mask
    i = list(loaded.ids).index("109")
    assert not loaded.present[i] and not loaded.mask[i].any() and (loaded.data[i] == 0).all()
    assert main(["cohort", "--dataset", "mini", "--kind", "mimic", "--task", "subtype", "--modalities", "ehr",
                 "cxr", "--ehr-path", str(hospital), "--out", str(tmp_path / "x.parquet")]) == 2  # fmt: skip
