"""``results/{dataset}/features/{task}/ehr.h5``: the discretized EHR time series of a cohort.

Rows follow the cohort table (``ids`` = ``sample_id``); ``present`` = the cohort's ``has_ehr``;
``data`` (N, steps, 76) holds the raw discretized values (the trainer z-scores the 12 continuous columns
per fold: ``ehr_zscore`` in :mod:`omnifuse.train.normalize`); ``mask`` marks the stay's valid steps. The
window of each stay is ``[intime, window_end]`` from the cohort (48 h for in-hospital mortality, the whole
stay for phenotyping), capped at ``max_hours``. Stays without EHR are all-zero rows with an empty mask.

Provenance: the cache records the cohort it was built for (:class:`omnifuse.formats.cohort.CohortRef`:
dataset, task, window, cohort sha256), the events file (path, size, modification time: re-extracted
events discard the shards of an interrupted build) and the machine (``host_cpu``). An events file that
cannot be read (truncated, not parquet) is an error naming it.

Writing: caches up to ``IN_MEMORY_BYTES`` are assembled in memory and written once with
:func:`omnifuse.formats.cache.write_cache` (discretizing takes seconds per 10,000 stays, so there is
little to resume); larger ones go shard by shard through the resumable
:class:`omnifuse.formats.cache.ShardedCacheWriter` (bounded memory, twice the disk traffic).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.discretizer import EPS, discretize, n_bins
from omnifuse.cohorts.ehr.events import read_events_summary, scan_events
from omnifuse.cohorts.ehr.options import DiscretizerOptions
from omnifuse.cohorts.mimic.tables import SourceError
from omnifuse.formats.cache import FeatureCache, ShardedCacheWriter, status_from_present, write_cache
from omnifuse.formats.cohort import CohortRef, read_cohort
from omnifuse.hostinfo import host_info

log = logging.getLogger(__name__)

ENCODER = "discretizer"
IN_MEMORY_BYTES = 2 << 30  # larger caches are written shard by shard


def window_hours(cohort: pl.DataFrame) -> np.ndarray:
    """Each stay's window length in hours (``window_end - intime``)."""
    for col in ("stay_id", "intime", "window_end", "has_ehr"):
        if col not in cohort.columns:
            raise ValueError(f"cohort table lacks column {col!r} (is it a MIMIC ICU-stay cohort?)")
    micro = (pl.col("window_end") - pl.col("intime")).dt.total_microseconds()
    return np.divide(cohort.select(micro.alias("us"))["us"].to_numpy(), 3.6e9)


def _load_events(events_path: str | Path, cap_hours: float) -> dict[str, np.ndarray]:
    """Events up to ``cap_hours`` after intime as numpy columns (stay_id, us, variable, value), sorted
    by stay (``omnifuse ehr extract`` writes them so; other files are sorted here)."""
    cap_us = int((cap_hours + EPS) * 3_600_000_000)
    frame = (
        scan_events(events_path).filter(pl.col("us") <= cap_us).select("stay_id", "us", "variable", "value")
    )
    frame = frame.collect()
    events = {c: frame[c].to_numpy() for c in frame.columns}
    del frame
    stay = events["stay_id"]
    if len(stay) and not np.all(stay[1:] >= stay[:-1]):
        order = np.argsort(stay, kind="stable")
        events = {c: v[order] for c, v in events.items()}
    return events


def events_error(path: str | Path, exc: BaseException) -> SourceError:
    """A :class:`SourceError` naming an events file that polars or the OS could not read."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return SourceError(
        f"{path}: not a readable EHR events file ({text[:300]}); it is truncated or damaged: rerun "
        "omnifuse ehr extract"
    )


def _read_events(events_path: str | Path, cap_hours: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The events (:func:`_load_events`) and their summary; unreadable files raise naming the file."""
    try:
        summary = read_events_summary(events_path)
        return _load_events(events_path, cap_hours), summary
    except (pl.exceptions.PolarsError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise events_error(events_path, exc) from exc


def _file_state(path: str | Path) -> str:
    st = Path(path).stat()
    return f"{Path(path).resolve()} ({st.st_size} bytes, mtime_ns {st.st_mtime_ns})"


def _shards(
    events: dict[str, np.ndarray], cohort_stays: np.ndarray, size: int
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """(start, stop, events of cohort rows start..stop-1 with ``row`` numbered from 0), per shard: each
    stay's events are one slice of the stay-sorted columns."""
    stay = events["stay_id"]
    for start in range(0, len(cohort_stays), size):
        stop = min(start + size, len(cohort_stays))
        ids = cohort_stays[start:stop]
        lo, hi = np.searchsorted(stay, ids, "left"), np.searchsorted(stay, ids, "right")
        counts = hi - lo
        index = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        part = {"row": np.repeat(np.arange(stop - start), counts)}
        part.update({c: events[c][index] for c in ("us", "variable", "value")})
        yield start, stop, part


def build_ehr_cache(
    cohort_path: str | Path,
    events_path: str | Path,
    out: str | Path,
    options: DiscretizerOptions,
    shard_size: int = 2048,
    progress: bool = False,
    threads: int = 2,
) -> dict[str, Any]:
    """Discretize every stay of the cohort into ``out`` (``threads`` shards of ``shard_size`` stays at
    a time). Returns a summary (counts, shape)."""
    cohort, meta = read_cohort(cohort_path)
    spec = channel_spec()
    ends = window_hours(cohort)
    longest = min(float(ends.max()), options.max_hours) if len(ends) else options.timestep
    n_steps = max(int(n_bins(longest, options.timestep)), 1)
    n, dim = cohort.height, spec.n_columns
    log.info("reading the events of %d stays from %s", n, events_path)
    events, summary = _read_events(events_path, longest)
    preprocessing = {
        **spec.to_json_dict(),
        "timestep_hours": options.timestep,
        "n_steps": n_steps,
        "max_hours": options.max_hours,
        "window": meta.extra.get("window", ""),
        "start_time": "ICU intime",
        "impute": "previous value; normal value before the first measurement",
        "values": "raw (not normalised): z-score the continuous columns with training-fold statistics",
        "task": meta.task,
        "events": {"source": summary.get("source"), "options": summary.get("options")},
    }
    attrs = {
        "encoder": ENCODER,
        "weights": "none",
        "preprocessing": preprocessing,
        **CohortRef.of(cohort_path, cohort, meta).cache_attrs(),
        "events_file": _file_state(events_path),
        **host_info(),
    }
    ids = cohort["sample_id"].to_list()
    present = cohort["has_ehr"].to_numpy().astype(bool)
    nbytes = n * n_steps * dim * np.dtype(options.dtype).itemsize

    def run(start: int, stop: int, part: dict[str, np.ndarray], out: np.ndarray | None = None):
        return discretize(part, ends[start:stop], options.timestep, n_steps, spec, options.dtype, out=out)

    shards = _shards(events, cohort["stay_id"].cast(pl.Int64).to_numpy(), shard_size)
    bar = tqdm(total=-(-n // shard_size), desc="ehr shards", disable=not progress)
    workers = max(threads, 1)

    def bounded(submit) -> Iterator[tuple[int, int, Any]]:
        """Submit shards (at most ``workers`` ahead) and yield (start, stop, result) in order."""
        window: list[tuple[int, int, Any]] = []
        for start, stop, part in shards:
            future = submit(start, stop, part)
            if future is not None:
                window.append((start, stop, future))
            while len(window) > workers:
                first = window.pop(0)
                yield first[0], first[1], first[2].result()
        for start, stop, future in window:
            yield start, stop, future.result()

    # numpy and polars release the GIL: several shards are discretized at a time
    with ThreadPoolExecutor(max_workers=workers) as pool:
        if nbytes <= IN_MEMORY_BYTES:
            data = np.empty((n, n_steps, dim), dtype=options.dtype)
            mask = np.zeros((n, n_steps), dtype=bool)

            def fill(start: int, stop: int, part: dict[str, np.ndarray]) -> None:
                _, mask[start:stop] = run(start, stop, part, out=data[start:stop])

            for _ in bounded(lambda start, stop, part: pool.submit(fill, start, stop, part)):
                bar.update()
            del events, shards
            data[~present] = 0
            mask[~present] = False
            status = status_from_present(present)
            write_cache(
                out, FeatureCache("ehr", np.asarray(ids, dtype=object), present, data, mask, attrs, status)
            )
        else:
            writer = ShardedCacheWriter(
                out,
                "ehr",
                ids,
                seq_len=n_steps,
                dim=dim,
                attrs=attrs,
                dtype=options.dtype,
                shard_size=shard_size,
            )
            todo = {s.start: s for s in writer.pending()}
            if len(todo) < -(-n // shard_size):
                log.info("resuming: %d of %d shards left", len(todo), -(-n // shard_size))

            def submit(start: int, stop: int, part: dict[str, np.ndarray]):
                return pool.submit(run, start, stop, part) if start in todo else None

            for start, stop, (shard_data, shard_mask) in bounded(submit):
                writer.write(todo[start], shard_data, shard_mask, present[start:stop])
                bar.update()
            writer.finalize()
    bar.close()
    info = {
        "samples": n,
        "present": int(present.sum()),
        "n_steps": n_steps,
        "columns": dim,
        "dtype": options.dtype,
        "capped": int((n_bins(ends, options.timestep) > n_steps).sum()),
        "written": "in memory" if nbytes <= IN_MEMORY_BYTES else "sharded",
    }
    log.info(
        "wrote %s: %d samples (%d with EHR), %d steps x %d columns (%s); %d stays capped at %g h",
        out,
        n,
        info["present"],
        n_steps,
        dim,
        options.dtype,
        info["capped"],
        options.max_hours,
    )
    return info
