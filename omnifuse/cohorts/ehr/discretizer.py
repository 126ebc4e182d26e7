"""The mimic3-benchmarks / MedFuse discretizer, vectorised over many stays at once.

Semantics of ``mimic3_models.preprocessing.Discretizer(impute_strategy="previous", start_time="zero",
store_masks=True)`` with ``transform(X, end=window_end)``:

* bins are counted from ICU ``intime``: an event at ``t`` hours falls in bin ``int(t / timestep - 1e-6)``
  (so ``t = timestep`` is still bin 0, ``t`` in ``(-1e-6, 0]`` too); a stay observed until ``end`` hours
  has ``int(end / timestep + 1 - 1e-6)`` bins (48 h at 2 h: 24) and events after ``end + 1e-6`` are ignored;
* inside a bin the last event wins; events at the same time for the same variable are first reduced
  to the largest value (mimic3-benchmarks sorts by value and keeps the last; category strings compare
  as text);
* a bin without a measurement repeats the previous bin's value, or the variable's normal value before
  the first measurement;
* categorical variables become one-hot columns in the reference category order, continuous ones their
  value; 17 mask columns are 1 where the bin had a real measurement.

Stays longer than the cap (``max_hours``) keep their first bins; shorter stays are padded with zeros
and their padding is False in the step mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from omnifuse.cohorts.ehr.channels import ChannelSpec, channel_spec

EPS = 1e-6
US_PER_HOUR = 3_600_000_000


def n_bins(end_hours: float | np.ndarray, timestep: float) -> np.ndarray:
    """Bins of a window ``[0, end]`` (the reference's ``int(max_hours / timestep + 1 - eps)``)."""
    return np.floor(np.asarray(end_hours, dtype=np.float64) / timestep + 1.0 - EPS).astype(np.int64)


def _tie_keys(spec: ChannelSpec) -> np.ndarray:
    """(17, max categories) rank of each category string in text order (ties between same-time values
    of a categorical variable go to the largest string, as in the reference's sort)."""
    width = max((len(v.categories) for v in spec.variables), default=1)
    keys = np.zeros((len(spec.variables), width), dtype=np.float64)
    for v in spec.variables:
        if v.categorical:
            order = sorted(range(len(v.categories)), key=lambda i: v.categories[i])
            keys[v.index, order] = np.arange(len(order))
    return keys


def _last_per_cell(
    row: np.ndarray,
    us: np.ndarray,
    var: np.ndarray,
    value: np.ndarray,
    *,
    n_steps: int,
    timestep: float,
    ends: np.ndarray,
    steps: np.ndarray,
    spec: ChannelSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index ((row * n_steps + bin) * 17 + variable) and the value that wins each cell:
    the latest event in the bin; among events at that same time the largest value (text order for
    categories). One integer sort: (cell, time offset inside the bin) packed into an int64."""
    n_var = len(spec.variables)
    step_us = round(timestep * US_PER_HOUR)
    hours = np.divide(us, float(US_PER_HOUR))
    bins = np.floor(np.maximum(hours / timestep - EPS, 0.0)).astype(np.int64)
    keep = (hours <= ends[row] + EPS) & (bins < steps[row])
    row, us, var, value, bins = row[keep], us[keep], var[keep], value[keep], bins[keep]
    cell = (row * n_steps + bins) * n_var + var
    # categories compare as text: map category index -> rank of its string, and back afterwards
    keys = _tie_keys(spec)
    is_cat = np.array([v.categorical for v in spec.variables])[var]
    rank = value.copy()
    codes = np.clip(value[is_cat], 0, keys.shape[1] - 1).astype(np.int64)
    rank[is_cat] = keys[var[is_cat], codes]
    slack = round(2 * EPS * US_PER_HOUR * max(timestep, 1.0)) + 1
    offset = us - bins * step_us + slack  # >= 0: events within eps before the bin start
    if not len(cell):
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    offset_bits = max(int(offset.max()).bit_length(), 1)
    if int(cell.max()).bit_length() + offset_bits < 63:
        packed = (cell << offset_bits) | offset
        order = np.argsort(packed)
        packed, rank = packed[order], rank[order]
        starts = np.flatnonzero(np.r_[True, packed[1:] != packed[:-1]])
        run_cell = packed[starts] >> offset_bits
    else:  # too wide to pack into one integer: sort on two keys
        order = np.lexsort((offset, cell))
        cell, offset, rank = cell[order], offset[order], rank[order]
        starts = np.flatnonzero(np.r_[True, (cell[1:] != cell[:-1]) | (offset[1:] != offset[:-1])])
        run_cell = cell[starts]
    best = np.maximum.reduceat(rank, starts)  # same cell and time: the largest value
    last = np.r_[run_cell[1:] != run_cell[:-1], True]  # latest time in the cell
    cells, won = run_cell[last], best[last]
    won_var = cells % n_var
    cat = np.array([v.categorical for v in spec.variables])[won_var]
    if cat.any():
        inverse = np.zeros(keys.shape, dtype=np.int64)  # rank -> category index
        for v in spec.variables:
            inverse[v.index, keys[v.index, : v.width].astype(np.int64)] = np.arange(v.width)
        won = won.copy()
        won[cat] = inverse[won_var[cat], won[cat].astype(np.int64)]
    return cells, won


def _column(events: pl.DataFrame | Mapping[str, np.ndarray], name: str, dtype: type) -> np.ndarray:
    col = events[name]
    return np.asarray(col.to_numpy() if isinstance(col, pl.Series) else col).astype(dtype, copy=False)


def discretize(
    events: pl.DataFrame | Mapping[str, np.ndarray],
    end_hours: np.ndarray,
    timestep: float,
    n_steps: int,
    spec: ChannelSpec | None = None,
    dtype: np.dtype | str = np.float32,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Discretize the events of N stays (into ``out``, a C-contiguous (N, n_steps, 76) array, if given).

    ``events``: columns (polars or numpy) ``row`` (0..N-1, the stay), ``us`` (microseconds since
    intime), ``variable``, ``value`` (number or category index); ``end_hours`` (N,): each stay's window
    end. Returns ``data``
    (N, n_steps, 76) and the step mask (N, n_steps): True for the stay's ``min(n_bins(end), n_steps)``
    bins.
    """
    spec = spec or channel_spec()
    n, n_var = len(end_hours), len(spec.variables)
    ends = np.asarray(end_hours, dtype=np.float64)
    steps = np.clip(n_bins(ends, timestep), 1, n_steps)
    step_mask = np.arange(n_steps)[None, :] < steps[:, None]
    cells, values = _last_per_cell(
        _column(events, "row", np.int64),
        _column(events, "us", np.int64),
        _column(events, "variable", np.int64),
        _column(events, "value", np.float64),
        n_steps=n_steps, timestep=timestep, ends=ends, steps=steps, spec=spec,
    )  # fmt: skip
    # slot 0 of each stay holds the normal values, slots 1.. the bins: "previous value, else the
    # normal value" is then the value at the last observed slot (0 when none)
    work = np.float32 if np.dtype(dtype) == np.float32 else np.float64
    raw = np.full((n, n_steps + 1, n_var), np.nan, dtype=work)
    raw[:, 0, :] = [v.normal_code for v in spec.variables]
    row, rest = np.divmod(cells, n_steps * n_var)
    raw.reshape(-1)[row * ((n_steps + 1) * n_var) + n_var + rest] = values
    seen = ~np.isnan(raw)
    observed = seen[:, 1:, :]
    last = np.where(seen, np.arange(n_steps + 1, dtype=np.int32)[None, :, None], np.int32(0))
    np.maximum.accumulate(last, axis=1, out=last)
    filled = np.take_along_axis(raw, last, axis=1)[:, 1:, :].reshape(n * n_steps, n_var)
    del raw, last
    if out is None:
        out = np.empty((n, n_steps, spec.n_columns), dtype=dtype)
    if out.shape != (n, n_steps, spec.n_columns) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {(n, n_steps, spec.n_columns)} array, got {out.shape}")
    # the columns are written in place, block by block: no (N * steps, 76) temporaries
    flat, cells = out.reshape(n * n_steps, spec.n_columns), np.arange(n * n_steps)
    for v in spec.variables:
        if v.categorical:  # one-hot: a 1 in the slot of the category
            block = flat[:, v.begin : v.begin + v.width]
            block[...] = 0
            block[cells, filled[:, v.index].astype(np.int64)] = 1
        else:
            flat[:, v.begin] = filled[:, v.index]
    flat[:, spec.mask_begin :] = observed.reshape(n * n_steps, n_var)
    data = out
    data[~step_mask] = 0
    return data, step_mask
