"""The discretizer on hand-built episodes: one test per rule of mimic3-benchmarks' Discretizer."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.discretizer import discretize, n_bins

SPEC = channel_spec()
US = 3_600_000_000
HR, TEMP, GCS_EYE, CRR = (SPEC[n] for n in ("Heart Rate", "Temperature", "Glascow coma scale eye opening",
                                             "Capillary refill rate"))  # fmt: skip
MASK = SPEC.mask_begin


def events(*rows: tuple[int, float, int, float]) -> pl.DataFrame:
    """(row, hours, variable index, value) -> the discretizer's input frame."""
    return pl.DataFrame(
        {
            "row": [r[0] for r in rows],
            "us": [round(r[1] * US) for r in rows],
            "variable": [r[2] for r in rows],
            "value": [float(r[3]) for r in rows],
        },
        schema={"row": pl.Int64, "us": pl.Int64, "variable": pl.UInt8, "value": pl.Float64},
    )


def run(rows, end=48.0, timestep=2.0, n_steps=None, n=1):
    ends = np.full(n, end)
    steps = n_steps or int(n_bins(end, timestep))
    return discretize(events(*rows), ends, timestep, steps)


def test_layout_is_76_columns_with_12_continuous():
    assert SPEC.n_columns == 76 and MASK == 59
    assert len(SPEC.continuous_columns()) == 12
    assert sum(v.width for v in SPEC.variables if v.categorical) == 47
    assert HR.begin == 50 and not HR.categorical


@pytest.mark.parametrize(("end", "timestep", "bins"), [(48, 2.0, 24), (48, 1.0, 48), (3, 2.0, 2), (4, 2.0, 2),
                                                       (4.0001, 2.0, 3), (0.5, 2.0, 1)])  # fmt: skip
def test_number_of_bins(end, timestep, bins):
    assert n_bins(end, timestep) == bins


@pytest.mark.parametrize(
    ("hours", "bin_"),
    [(0.0, 0), (-0.0000005, 0), (1.999, 0), (2.0, 0), (2.0001, 1), (47.99, 23), (48.0, 23), (48.0000005, 23)],
)
def test_bin_edges(hours, bin_):
    data, _ = run([(0, hours, HR.index, 120)])
    measured = np.flatnonzero(data[0, :, MASK + HR.index])
    assert measured.tolist() == [bin_]
    assert data[0, bin_, HR.begin] == 120


def test_events_after_the_window_are_ignored():
    data, _ = run([(0, 48.01, HR.index, 120)])
    assert data[0, :, MASK + HR.index].sum() == 0
    assert (data[0, :, HR.begin] == 86).all()  # normal value everywhere


def test_last_value_in_a_bin_wins_and_ties_keep_the_largest():
    data, _ = run(
        [(0, 0.5, HR.index, 100), (0, 1.5, HR.index, 90), (0, 3.0, HR.index, 70), (0, 3.0, HR.index, 75)]
    )
    assert data[0, 0, HR.begin] == 90  # last in bin 0
    assert data[0, 1, HR.begin] == 75  # same time: the larger value
    # categorical tie: the larger category string ("To Speech" > "Spontaneously" as text)
    spont, speech = GCS_EYE.categories.index("Spontaneously"), GCS_EYE.categories.index("To Speech")
    data, _ = run([(0, 1.0, GCS_EYE.index, speech), (0, 1.0, GCS_EYE.index, spont)])
    assert data[0, 0, GCS_EYE.begin + speech] == 1 and data[0, 0, GCS_EYE.begin + spont] == 0


def test_gaps_repeat_the_previous_value_and_leading_gaps_the_normal_value():
    data, _ = run([(0, 5.0, HR.index, 100), (0, 11.0, TEMP.index, 38.5)])
    hr = data[0, :, HR.begin]
    assert (hr[:2] == 86).all() and (hr[2:] == 100).all()  # normal 86 before bin 2, then carried forward
    temp = data[0, :, TEMP.begin]
    assert np.allclose(temp[:5], 36.6) and np.allclose(temp[5:], 38.5)
    masks = data[0, :, MASK:]
    assert masks.sum() == 2 and masks[2, HR.index] == 1 and masks[5, TEMP.index] == 1
    # categorical normal values: "4 Spontaneously" one-hot until the first measurement
    normal = GCS_EYE.categories.index("4 Spontaneously")
    assert (data[0, :, GCS_EYE.begin + normal] == 1).all()


@pytest.mark.parametrize("variable", [v.name for v in SPEC.variables if v.categorical])
def test_each_category_string_has_its_own_one_hot_column(variable):
    v = SPEC[variable]
    rows = [(i, 1.0, v.index, code) for i, code in enumerate(range(v.width))]
    data, _ = run(rows, n=v.width)
    block = data[:, 0, v.begin : v.begin + v.width]
    assert np.array_equal(block, np.eye(v.width))
    assert (data[:, 0, MASK + v.index] == 1).all()
    assert SPEC.column_names()[v.begin : v.begin + v.width] == [f"{variable}->{c}" for c in v.categories]


def test_short_stays_are_padded_and_long_ones_capped():
    ends = np.array([3.0, 48.0, 500.0])
    ev = events(
        (0, 1.0, HR.index, 100), (1, 47.0, HR.index, 101), (2, 9.0, HR.index, 102), (2, 300.0, HR.index, 1)
    )
    data, mask = discretize(ev, ends, 2.0, 24)
    assert mask.sum(axis=1).tolist() == [2, 24, 24]
    assert (data[0, 2:] == 0).all() and data[0, 1, HR.begin] == 100
    assert data[2, :, MASK + HR.index].sum() == 1  # the event at 300 h is beyond the 24 steps


def test_rows_are_independent_and_empty_input_gives_normal_values():
    data, mask = discretize(events(), np.array([48.0, 48.0]), 2.0, 24)
    assert data.shape == (2, 24, 76) and mask.all()
    assert (data[:, :, HR.begin] == 86).all() and (data[:, :, MASK:] == 0).all()
    assert (data[:, :, CRR.begin + CRR.categories.index("0.0")] == 1).all()


def test_writes_into_a_given_buffer_and_numpy_input():
    out = np.full((1, 24, 76), -1.0, dtype=np.float32)
    cols = {
        "row": np.array([0]),
        "us": np.array([US]),
        "variable": np.array([HR.index]),
        "value": np.array([99.0]),
    }
    data, _ = discretize(cols, np.array([48.0]), 2.0, 24, out=out)
    assert data is out and out[0, 0, HR.begin] == 99 and (out >= 0).all()
    with pytest.raises(ValueError, match="C-contiguous"):
        discretize(cols, np.array([48.0]), 2.0, 24, out=np.zeros((1, 24, 75), np.float32))
