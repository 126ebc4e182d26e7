"""Event extraction: item mapping, stay linking, unit cleaning, categories, impossible values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.events import (
    PART_STAYS,
    SORT_KEYS,
    extract_events,
    extract_events_to,
    in_event_order,
    read_events_summary,
    scan_events,
    summary_path,
)
from omnifuse.cohorts.ehr.options import EventOptions
from omnifuse.cohorts.mimic import open_source
from tests.helpers import T0, chart, lab, mini_hospital, ts

SPEC = channel_spec()
S, H, STAY = 1, 11, 101  # subject, admission and ICU stay of the mini-hospital's first patient


def c(hours, itemid, valuenum=None, value=None, stay=STAY):
    return chart(S, H, stay, ts(hours), itemid, valuenum, value)


CHART = [
    c(1.0, 220045, 80),  # heart rate
    c(1.5, 223761, 98.6),  # °F -> 37 °C
    c(2.0, 223762, 99.5),  # °C item but >= 79: converted too (reference rule)
    c(2.5, 226531, 200),  # lb -> 90.7184 kg
    c(3.0, 226707, 70),  # inch -> round(177.8) = 178 cm
    c(3.5, 223835, 40),  # FiO2 % -> 0.4
    c(3.6, 223835, 0.5),  # FiO2 already a fraction
    c(4.0, 220277, 0.97),  # SpO2 fraction -> 97
    c(4.5, 220179, None, "120/80"),  # cuff pressure charted as text
    c(4.5, 220180, None, "120/80"),
    c(5.0, 220739, 3, "To Speech"),  # GCS text
    c(5.0, 223900, 1, "No Response-ETT"),
    c(5.5, 223951, None, "Abnormal >3 Seconds"),  # MIMIC-IV capillary refill (switch)
    c(6.0, 220045, 450),  # impossible heart rate
    c(6.5, 223761, 986),  # 986 °F typed for 98.6
    c(7.0, 220739, None, "Eyes closed by swelling"),  # unknown category
    c(7.5, 220045, None, "ERROR"),  # no value
    c(-0.5, 220045, 70),  # before intime: dropped
    c(100.0, 220045, 70),  # after outtime (72 h): dropped
    c(8.0, 220046, 120),  # an item that feeds no variable
]
LABS = [
    lab(S, H, ts(9.0), 50931, 150),  # glucose, linked by hadm_id
    lab(S, None, ts(9.5), 50931, 151),  # outpatient lab without hadm_id: dropped (validate_events)
    lab(S, H, ts(-30.0), 50820, 7.3),  # lab before the ICU stay: dropped
]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = mini_hospital(tmp_path_factory.mktemp("ev") / "mimic-iv", chart_rows=CHART, lab_rows=LABS)
    return open_source(root)


def values(events: pl.DataFrame, name: str) -> list[float]:
    v = SPEC[name]
    return events.filter(pl.col("variable") == v.index).sort("us")["value"].to_list()


def test_cleaning_rules(source):
    events, summary = extract_events(source, EventOptions())
    assert set(events["stay_id"].to_list()) == {STAY}
    assert values(events, "Heart Rate") == [80]
    assert values(events, "Temperature") == pytest.approx([37.0, (99.5 - 32) * 5 / 9])
    assert values(events, "Weight") == pytest.approx([200 * 0.453592])
    assert values(events, "Height") == [178]
    assert values(events, "Fraction inspired oxygen") == pytest.approx([0.4, 0.5])
    assert values(events, "Oxygen saturation") == pytest.approx([97])
    assert values(events, "Systolic blood pressure") == [120]
    assert values(events, "Diastolic blood pressure") == [80]
    assert values(events, "Glucose") == [150]
    eye, verbal = SPEC["Glascow coma scale eye opening"], SPEC["Glascow coma scale verbal response"]
    assert [eye.categories[int(x)] for x in values(events, eye.name)] == ["To Speech"]
    assert [verbal.categories[int(x)] for x in values(events, verbal.name)] == ["No Response-ETT"]
    crr = SPEC["Capillary refill rate"]
    assert [crr.categories[int(x)] for x in values(events, crr.name)] == ["1.0"]
    counts = summary["variables"]
    assert counts["Heart Rate"] == {
        "linked": 3,
        "kept": 1,
        "no_value": 1,
        "unknown_category": 0,
        "outlier": 1,
    }
    assert counts["Temperature"]["outlier"] == 1
    assert counts["Glascow coma scale eye opening"]["unknown_category"] == 1
    assert summary["stays_with_events"] == 1 and summary["rows_kept"] == events.height
    hours = (events["us"] / 3_600_000_000).to_list()
    assert min(hours) == 1.0 and max(hours) == 9.0


def test_switches(source):
    events, summary = extract_events(source, EventOptions(capillary_refill_text=False, drop_outliers=False))
    assert values(events, "Capillary refill rate") == []
    assert values(events, "Heart Rate") == [80, 450]
    assert summary["variables"]["Heart Rate"]["outlier"] == 0


def test_events_file_and_summary(source, tmp_path):
    path = tmp_path / "events.parquet"
    summary = extract_events_to(path, source, EventOptions())
    assert summary_path(path).is_file() and read_events_summary(path) == summary
    on_disk = scan_events(path).collect().sort("us", "variable")
    in_memory, _ = extract_events(source, EventOptions())
    assert on_disk.drop("hours").equals(in_memory.sort("us", "variable"))
    assert on_disk["hours"][0] == 1.0
    pl.DataFrame({"a": [1]}).write_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match="not an EHR events file"):
        scan_events(tmp_path / "other.parquet")


def test_meds_numbers_map_to_the_same_categories(tmp_path):
    """A MEDS export keeps only numbers: GCS 3 and 1 give the same one-hot columns as the texts."""
    from datetime import timedelta

    rows = [
        (1, T0 - timedelta(days=60 * 365), "MEDS_BIRTH", None),
        (1, T0 - timedelta(hours=6), "HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", None),
        (1, T0, "ICU_ADMISSION//MICU", None),
        (1, T0 + timedelta(hours=5), "LAB//220739//UNK", 3.0),
        (1, T0 + timedelta(hours=5), "LAB//223900//UNK", 1.0),
        (1, T0 + timedelta(hours=6), "LAB//223761//°F", 98.6),
        (1, T0 + timedelta(hours=7), "LAB//223951//UNK", None),
        (1, T0 + timedelta(hours=72), "ICU_DISCHARGE//MICU", None),
        (1, T0 + timedelta(hours=90), "HOSPITAL_DISCHARGE//HOME", None),
    ]
    frame = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                       "numeric_value": pl.Float32}, orient="row")  # fmt: skip
    frame.write_parquet(tmp_path / "meds.parquet")
    events, summary = extract_events(open_source(tmp_path / "meds.parquet"), EventOptions())
    eye, verbal = SPEC["Glascow coma scale eye opening"], SPEC["Glascow coma scale verbal response"]
    assert [eye.categories[int(x)] for x in values(events, eye.name)] == ["To Speech"]
    assert [verbal.categories[int(x)] for x in values(events, verbal.name)] == ["No Response"]
    assert values(events, "Temperature") == pytest.approx([37.0], abs=1e-5)
    assert summary["variables"]["Capillary refill rate"]["no_value"] == 1


def test_counts_of_rows_dropped_before_the_variables(source):
    _, summary = extract_events(source, EventOptions())
    assert summary["rows_unknown_item"] == 1  # the heart-rate alarm (220046)
    assert summary["rows_orphan"] == 1  # the outpatient lab without hadm_id


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A small synthetic hospital with filler rows (stays of all lengths, labs, every unit variant)."""
    from omnifuse.synth.mimic import MimicSynthConfig, generate_mimic

    out = tmp_path_factory.mktemp("synthetic") / "hospital"
    generate_mimic(out, MimicSynthConfig(n_stays=60, seed=5, with_cxr=False, filler_ratio=2.0), workers=1)
    return open_source(out / "mimic-iv")


@pytest.mark.parametrize(("part_stays", "part_rows"), [(1, None), (7, None), (PART_STAYS, 500)])
def test_partitioned_extraction_is_the_in_memory_one(synthetic, tmp_path, monkeypatch, part_stays, part_rows):
    """Tiny partitions (one stay each, 7, or all stays read in pieces of 500 rows) give the file of the
    straightforward in-memory computation: same rows in the same order, same summary, same bytes."""
    from omnifuse.cohorts.ehr import events as events_module

    reference, reference_summary = extract_events(synthetic, EventOptions())
    if part_rows:
        monkeypatch.setattr(events_module, "PART_ROWS", part_rows)
    assert reference.equals(reference.sort(list(SORT_KEYS)))  # the documented order
    path = tmp_path / "events.parquet"
    summary = extract_events_to(path, synthetic, EventOptions(), part_stays=part_stays)
    assert summary == reference_summary
    assert summary["rows_unknown_item"] > summary["rows_kept"] > 0 and summary["rows_orphan"] > 0
    assert pl.read_parquet(path).equals(reference)
    default = tmp_path / "default.parquet"
    extract_events_to(default, synthetic, EventOptions())
    assert path.read_bytes() == default.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.json", "default.parquet", "events.json",
                                                          "events.parquet"]  # fmt: skip


def test_a_failed_extraction_leaves_no_file(synthetic, tmp_path, monkeypatch):
    from omnifuse.cohorts.ehr import events as events_module

    def failing(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(events_module, "_write_sorted", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        extract_events_to(tmp_path / "events.parquet", synthetic, EventOptions(), part_stays=5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stay_range", [1_000, 10_000_000_000])
def test_event_order_is_the_sort_by_stay_time_variable_value(stay_range):
    """The numpy sort (lookup-table or unique ranks) and polars' fallback give polars' four-key sort."""
    rng = np.random.default_rng(3)
    n = 5000
    frame = pl.DataFrame(
        {
            "stay_id": rng.integers(0, stay_range, 40)[rng.integers(0, 40, n)],
            "us": rng.integers(-3600, 50, n) * 60_000_000,  # many ties, some before intime
            "variable": rng.integers(0, 17, n).astype(np.uint8),
            "value": rng.integers(0, 4, n).astype(np.float64),
        }
    )
    assert in_event_order(frame).equals(frame.sort(list(SORT_KEYS)))
    wide = frame.with_columns(us=pl.col("us") * 10_000_000)  # a key of more than 63 bits: polars
    assert in_event_order(wide).equals(wide.sort(list(SORT_KEYS)))
    assert in_event_order(frame.head(0)).height == 0
