"""Raw charted / lab events -> clean values of the 17 variables, linked to ICU stays (one scan).

Rules (mimic3-benchmarks ``preprocessing.clean_events`` and ``extract_episodes_from_subjects``, with the
fixes noted):

* item ids map to variables through ``ehr_items.csv`` (MIMIC-IV metavision and lab ids of the
  mimic3-benchmarks map with STATUS ready, plus the MIMIC-IV capillary refill items behind
  ``capillary_refill_text``);
* an event belongs to a stay by ``stay_id``; without one by ``hadm_id`` (lab events); without either
  (MEDS) by subject; it is kept when it lies in ``[intime, outtime]`` (hours in ``(-1e-6, los + 1e-6)``,
  the phenotyping window, which contains the in-hospital-mortality window ``[0, 48 h]``);
  lab events without ``hadm_id`` are dropped (mimic3-benchmarks ``validate_events``);
* continuous values: ``valuenum``, else the text parsed as a number (``120/80`` -> 120 systolic, 80
  diastolic); °F -> °C for °F items and any temperature >= 79 (the reference's effective rule);
  lb -> kg (x 0.453592), oz -> kg; inch -> cm (x 2.54, rounded as the reference does); FiO2 > 1 is a
  percentage (/ 100; the reference divides every value, a Python 3 bug); SpO2 <= 1 is a fraction
  (x 100); values outside the impossible-value range of ``ehr_channels.yaml`` are dropped and counted
  (``drop_outliers``);
* categorical values: the charted text when it is one of the reference category strings (capillary
  refill texts map to "0.0" / "1.0"), else the numeric value's category (MEDS keeps only numbers);
  unknown texts are dropped and counted.

The output has one row per kept event: ``stay_id`` i64, ``us`` i64 (microseconds since ``intime``: exact;
:func:`scan_events` adds ``hours``), ``variable`` u8 (channel index), ``value`` f64 (the number, or the
category index for categorical variables), in one fixed order: by ``stay_id``, ``us``, ``variable``,
``value`` (:data:`SORT_KEYS`). ``omnifuse ehr extract`` writes it as a parquet file and the extraction
summary as a JSON file next to it: counts per variable, plus the rows dropped before that because their
item id feeds no variable (``rows_unknown_item``) or because they belong to no ICU stay
(``rows_orphan``: ``stay_id`` not in icustays, ``hadm_id`` missing or of an admission without ICU stay,
MEDS subjects without one).

Memory is bounded by the number of ICU stays, not by the number of event rows: one streaming read of
each table keeps the rows of the variables' items (a temporary file), the cleaning writes the kept
events, unsorted, into partitions of :data:`PART_STAYS` consecutive stays (temporary files next to the
output), and each partition is then sorted in memory on its own and streamed into the output file.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from polars.io.plugins import register_io_source

import omnifuse
from omnifuse.cohorts.ehr.channels import ChannelSpec, channel_spec, item_table
from omnifuse.cohorts.ehr.options import EventOptions
from omnifuse.cohorts.mimic.tables import EhrSource, EventScan, HospitalTables, SourceError
from omnifuse.formats.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

EPS = 1e-6
US_PER_HOUR = 3_600_000_000
META_KEY = "omnifuse.ehr_events"
EVENT_COLUMNS = {"stay_id": pl.Int64, "us": pl.Int64, "variable": pl.UInt8, "value": pl.Float64}
STATUS_COLUMN = {"status": pl.UInt8}
STAY_COLUMNS = ("stay_id", "subject_id", "hadm_id", "intime", "outtime")
LB_TO_KG = 0.453592
# divisors of the conversions travel as a column: polars divides by a literal through its reciprocal
# (35 / 100 would be 0.35000000000000003), by a column exactly, as the reference's numpy does
DIVISORS = {"Temperature": 9.0, "Fraction inspired oxygen": 100.0}
OZ_PER_LB = 16.0
UNIT_CODES = {"": 0, "degF": 1, "lb": 2, "oz": 3, "inch": 4}  # units that need a conversion
STATUS = {"kept": 0, "no_value": 1, "unknown_category": 2, "outlier": 3, "orphan": 4}
COUNT_NAMES = ("linked", "kept", "no_value", "unknown_category", "outlier")
SORT_KEYS = ("stay_id", "us", "variable", "value")  # the order of the events file
PART_STAYS = 2048  # ICU stays per partition: the events of one partition are sorted in memory at a time
PART_ROWS = 1_000_000  # larger partitions (stays with many events) are sorted in pieces of their stays
ROW_GROUP_SIZE = 1 << 20
VARIABLE_BITS = 5  # channel indices packed into the sort key (17 variables)
RANK_TABLE_MAX = 1 << 22  # stay-id ranges up to this are ranked through a lookup table


def stay_windows(tables: HospitalTables) -> pl.DataFrame:
    """Every ICU stay with known ``intime`` and ``outtime``: the stays events are linked to."""
    return tables.icustays.filter(pl.col("intime").is_not_null() & pl.col("outtime").is_not_null()).select(
        STAY_COLUMNS
    )


class EventCleaner:
    """Item mapping, stay linking and value cleaning of event scans (see the module docstring)."""

    def __init__(self, options: EventOptions, spec: ChannelSpec | None = None) -> None:
        self.options = options
        self.spec = spec or channel_spec()
        items = item_table(options.capillary_refill_text)
        self.itemids = sorted(items)
        variables = [self.spec[it.variable] for it in items.values()]
        # per item: its variable, unit conversion and impossible-value limits (joined in the scan;
        # a join streams, replace_strict on a column would not)
        self.items = pl.DataFrame(
            {
                "itemid": [it.itemid for it in items.values()],
                "variable": [v.index for v in variables],
                "unit": [UNIT_CODES.get(it.unit, 0) for it in items.values()],
                "is_cat": [v.categorical for v in variables],
                "low": [v.outlier_low for v in variables],
                "high": [v.outlier_high for v in variables],
                "divisor": [
                    OZ_PER_LB if it.unit == "oz" else DIVISORS.get(v.name, 1.0)
                    for it, v in zip(items.values(), variables, strict=True)
                ],
            },
            schema={
                "itemid": pl.Int64,
                "variable": pl.UInt8,
                "unit": pl.UInt8,
                "is_cat": pl.Boolean,
                "low": pl.Float64,
                "high": pl.Float64,
                "divisor": pl.Float64,
            },
        )
        rows: list[tuple[int, str, float]] = []
        nums: list[tuple[int, int, float]] = []
        for v in self.spec.variables:
            if not v.categorical:
                continue
            rows += [(v.index, c, float(i)) for i, c in enumerate(v.categories)]
            if v.name == "Capillary refill rate":
                text_maps = dict(self.spec.crr_text_reference)
                if options.capillary_refill_text:
                    text_maps.update(self.spec.crr_text_mimic_iv)
                rows += [(v.index, t, float(v.categories.index(c))) for t, c in text_maps.items()]
            numeric = self.spec.numeric_categories.get(v.name, {})
            nums += [(v.index, k, float(v.categories.index(c))) for k, c in numeric.items()]
        self.text_codes = pl.DataFrame(
            rows, schema={"variable": pl.UInt8, "value": pl.String, "code_text": pl.Float64}, orient="row"
        )
        self.num_codes = pl.DataFrame(
            nums, schema={"variable": pl.UInt8, "num": pl.Int64, "code_num": pl.Float64}, orient="row"
        )

    def _var(self, name: str) -> int:
        return self.spec[name].index

    def plan(self, events: EventScan, stays: pl.DataFrame) -> pl.LazyFrame:
        """The streaming plan of one event scan: map items to variables, attach each event to its
        stay(s) through ``events.link``, keep the events inside the stay, clean the values.

        Output: stay_id, us (microseconds since intime), variable, value (number or category index) and status
        (0 kept, 1 no value, 2 unknown category, 3 impossible value, 4 no ICU stay: ``stay_id`` and ``us``
        are then null)."""
        keys = ["stay_id", "intime", "outtime"] + ([events.link] if events.link != "stay_id" else [])
        windows = stays.lazy().select(keys).with_columns(in_stay=pl.lit(True))
        # integer microseconds: exact window tests (hours are divided exactly after collecting)
        us = (pl.col("charttime") - pl.col("intime")).dt.total_microseconds()
        los = (pl.col("outtime") - pl.col("intime")).dt.total_microseconds()
        eps_us = round(EPS * US_PER_HOUR)
        orphan = pl.col("in_stay").is_null()
        linked = (
            events.scan.join(self.items.lazy(), on="itemid", how="inner", maintain_order="none")
            .drop([c for c in ("stay_id", "hadm_id", "subject_id") if c != events.link])
            # left join: events of no stay stay in the plan, to be counted (status orphan)
            .join(windows, on=events.link, how="left", maintain_order="none")
            .with_columns(us=us, los=los, stay_id=pl.when(~orphan).then(pl.col("stay_id")))
            .filter(orphan | ((pl.col("us") > -eps_us) & (pl.col("us") < pl.col("los") + eps_us)))
            # the text matters only for categorical items and for numbers charted as text
            .with_columns(
                value=pl.when(pl.col("is_cat") | pl.col("valuenum").is_null()).then(
                    pl.col("value").str.strip_chars()
                )
            )
            .join(self.text_codes.lazy(), on=["variable", "value"], how="left", maintain_order="none")
            .with_columns(num=pl.col("valuenum").round(0).cast(pl.Int64, strict=False))
            .join(self.num_codes.lazy(), on=["variable", "num"], how="left", maintain_order="none")
        )
        var, unit, text = pl.col("variable"), pl.col("unit"), pl.col("value")
        sbp, dbp = self._var("Systolic blood pressure"), self._var("Diastolic blood pressure")
        # numbers charted as text (valuenum empty): "120/80" is systolic / diastolic
        bp_text = pl.when(var.is_in([sbp, dbp])).then(text)
        pair = bp_text.str.extract_groups(r"^(\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)$")
        from_text = (
            pl.when(~var.is_in([sbp, dbp]))
            .then(text)
            .when(var == sbp)
            .then(pair.struct.field("1"))
            .otherwise(pair.struct.field("2"))
            .cast(pl.Float64, strict=False)
        )
        x = pl.col("x")
        temp, weight, height = self._var("Temperature"), self._var("Weight"), self._var("Height")
        fio2, spo2 = self._var("Fraction inspired oxygen"), self._var("Oxygen saturation")
        number = (
            pl.when((var == temp) & ((unit == UNIT_CODES["degF"]) | (x >= 79)))
            .then((x - 32) * 5.0 / pl.col("divisor"))
            .when((var == weight) & (unit == UNIT_CODES["lb"]))
            .then(x * LB_TO_KG)
            .when((var == weight) & (unit == UNIT_CODES["oz"]))
            .then(x / pl.col("divisor") * LB_TO_KG)
            .when((var == height) & (unit == UNIT_CODES["inch"]))
            .then((x * 2.54).round(0))
            .when((var == fio2) & (x > 1.0))
            .then(x / pl.col("divisor"))
            .when((var == spo2) & (x <= 1.0))
            .then(x * 100.0)
            .otherwise(x)
        )
        is_cat, out = pl.col("is_cat"), pl.col("out")
        no_value = (
            pl.when(is_cat)
            .then((text.is_null() | (text == "")) & pl.col("valuenum").is_null())
            .otherwise(out.is_null() | out.is_nan())
        )
        impossible = ~is_cat & ((out < pl.col("low")) | (out > pl.col("high"))).fill_null(False)
        if not self.options.drop_outliers:
            impossible = pl.lit(False)
        status = (
            pl.when(orphan)
            .then(STATUS["orphan"])
            .when(no_value)
            .then(STATUS["no_value"])
            .when(is_cat & out.is_null())
            .then(STATUS["unknown_category"])
            .when(impossible)
            .then(STATUS["outlier"])
            .otherwise(STATUS["kept"])
        )
        return (
            linked.with_columns(
                x=pl.when(is_cat | pl.col("valuenum").is_not_null())
                .then(pl.col("valuenum"))
                .otherwise(from_text)
            )
            .with_columns(out=pl.when(is_cat).then(pl.coalesce("code_text", "code_num")).otherwise(number))
            .select(
                pl.col("stay_id").cast(pl.Int64),
                pl.col("us").cast(pl.Int64),
                pl.col("variable").cast(pl.UInt8),
                out.cast(pl.Float64).alias("value"),
                status.cast(pl.UInt8).alias("status"),
            )
        )


@dataclass(frozen=True)
class _Plans:
    scans: list[EventScan]  # the event tables of the source
    cleaner: EventCleaner
    stays: pl.DataFrame  # the stays events are linked to (STAY_COLUMNS)


def _plan(source: EhrSource, options: EventOptions, stays: pl.DataFrame | None) -> _Plans:
    """The event scans of ``source`` and the stays their events are linked to."""
    cleaner = EventCleaner(options)
    if stays is None:
        stays = stay_windows(source.tables())
    return _Plans(source.event_scans(cleaner.itemids), cleaner, stays.select(STAY_COLUMNS))


def _filter_tables(plans: _Plans, scratch: Path) -> tuple[list[EventScan], int]:
    """Step 1: the rows of the 17 variables' items of every table, streamed into a temporary parquet
    file under ``scratch`` (the event columns only), and the number of rows of other items.

    One read of each table: the rows and the count share its scan. Both consumers are light, so that
    polars does not buffer the table (it does when one consumer is much slower than the other, e.g. the
    whole cleaning plan)."""
    queries, filtered = [], []
    for i, events in enumerate(plans.scans):
        log.info("reading %s", events.name)
        part = scratch / f"events-{i}.parquet"
        queries.append(events.scan.sink_parquet(part, compression="lz4", statistics=False, lazy=True))
        filtered.append(EventScan(events.name, pl.scan_parquet(part), events.link))
    counts = [events.skipped for events in plans.scans if events.skipped is not None]
    try:
        out = pl.collect_all([*queries, *counts], engine="streaming")
    except pl.exceptions.PolarsError as exc:
        for events in plans.scans:  # which table? (error path only: read them one by one)
            try:
                events.scan.select(pl.all().null_count()).collect(engine="streaming")  # every column parsed
            except pl.exceptions.PolarsError as inner:
                raise SourceError(
                    f"{events.name}: cannot read events ({str(inner).splitlines()[0]})"
                ) from inner
        raise SourceError(f"cannot read events ({str(exc).splitlines()[0]})") from exc
    return filtered, sum(int(frame.item()) for frame in out[len(queries) :])


def _run(
    plans: _Plans, scans: list[EventScan], target: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> pl.DataFrame:
    """Step 2: the cleaning plan of every (filtered) table as one streaming query into ``target``, which
    gets the rows of every status."""
    frames = [plans.cleaner.plan(events, plans.stays) for events in scans]
    plan = pl.concat(frames) if len(frames) > 1 else frames[0]
    return pl.collect_all([target(plan)], engine="streaming")[0]


def _kept(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col("status") == STATUS["kept"]).select(list(EVENT_COLUMNS))


def in_event_order(events: pl.DataFrame) -> pl.DataFrame:
    """``events`` in the order of the events file (:data:`SORT_KEYS`), whatever order they came in."""
    order = _event_order(events)
    return events if order is None else events.rechunk()[order]  # gathers from one chunk are faster


def _stay_ranks(stay: np.ndarray) -> np.ndarray:
    """Dense rank of each stay id (0 for the smallest)."""
    low, span = int(stay.min()), int(stay.max()) - int(stay.min()) + 1
    if span <= RANK_TABLE_MAX:  # a lookup table over the id range: linear time
        present = np.zeros(span, dtype=bool)
        present[stay - low] = True
        return (np.cumsum(present, dtype=np.int64) - 1)[stay - low]
    return np.unique(stay, return_inverse=True)[1].astype(np.int64)


def _event_order(events: pl.DataFrame) -> np.ndarray | None:
    """Row order by :data:`SORT_KEYS`: one numpy sort of an integer key packing (stay rank, time,
    variable), ties broken by value (several times faster than polars' four-column sort); polars'
    sort when the key does not fit in 63 bits. None when there is nothing to sort."""
    if events.height < 2:
        return None
    if events.select(pl.any_horizontal(pl.all().is_null().any())).item():
        return events.with_row_index("_row").sort(list(SORT_KEYS))["_row"].to_numpy()
    stay, us = events["stay_id"].to_numpy(), events["us"].to_numpy()
    variable, value = events["variable"].to_numpy().astype(np.int64), events["value"].to_numpy()
    rank = _stay_ranks(stay)
    low, us_span = int(us.min()), int(us.max()) - int(us.min()) + 1
    n_stays = int(rank.max()) + 1
    if (n_stays * us_span).bit_length() + VARIABLE_BITS > 63 or int(variable.max()) >> VARIABLE_BITS:
        return events.with_row_index("_row").sort(list(SORT_KEYS))["_row"].to_numpy()
    key = ((rank * us_span + (us - low)) << VARIABLE_BITS) | variable
    order = np.argsort(key)
    ordered = key[order]
    same = ordered[1:] == ordered[:-1]
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    if tied.any():  # runs of equal keys: order them by value (np.argsort is not stable either)
        where = np.flatnonzero(tied)
        rows = order[where]
        order[where] = rows[np.lexsort((value[rows], ordered[where]))]
    return order


def extract_events(
    source: EhrSource, options: EventOptions, stays: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Scan ``source`` once; return the clean events of ``stays`` (default: every ICU stay) in memory,
    in the order of the events file, with the summary (options, source, per-variable counts of linked /
    kept / dropped rows). Memory grows with the number of events: :func:`extract_events_to` does not."""
    plans = _plan(source, options, stays)
    with tempfile.TemporaryDirectory(prefix="omnifuse-events-") as scratch:
        scans, unknown = _filter_tables(plans, Path(scratch))
        linked = _run(plans, scans, lambda plan: plan)
    events = in_event_order(_kept(linked))
    counts = _status_counts(linked)
    summary = _summary(source, options, plans.stays.height, events["stay_id"].n_unique(), counts, unknown)
    return events, summary


def extract_events_to(
    path: str | Path,
    source: EhrSource,
    options: EventOptions,
    stays: pl.DataFrame | None = None,
    part_stays: int = PART_STAYS,
) -> dict[str, Any]:
    """Like :func:`extract_events`, writing the events into the parquet file ``path`` (atomically) and
    the summary into ``{path stem}.json`` next to it. Memory is bounded by ``part_stays`` stays' events,
    in three steps with temporary files next to ``path`` (removed on success and on failure): the rows
    of the variables' items are streamed out of each table (:func:`_filter_tables`), cleaned and linked
    to stays into partitions of ``part_stays`` consecutive stays (:func:`_partitioned_sink`), and each
    partition is sorted on its own into ``path`` (:func:`_write_sorted`)."""
    if part_stays < 1:
        raise ValueError(f"part_stays must be >= 1, got {part_stays}")
    path = Path(path)
    plans = _plan(source, options, stays)
    parts = _partitions(plans.stays, part_stays)
    n_parts = int(parts["part"].max()) + 1 if parts.height else 0
    provenance = {"source": source.description, "options": asdict(options)}
    marker = {META_KEY: json.dumps(provenance, sort_keys=True)}
    with _scratch_dir(path) as scratch, atomic_path(path) as tmp:
        log.info(
            "writing the events of %d stays in %d partitions under %s", plans.stays.height, n_parts, scratch
        )
        scans, unknown = _filter_tables(plans, scratch)
        _run(plans, scans, lambda plan: _partitioned_sink(plan, parts, n_parts, scratch))
        n_with, counts = _write_sorted(scratch, parts, tmp, marker)
    summary = _summary(source, options, plans.stays.height, n_with, counts, unknown)
    write_text_atomic(summary_path(path), json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def _partitions(stays: pl.DataFrame, part_stays: int) -> pl.DataFrame:
    """stay_id -> partition: runs of ``part_stays`` consecutive stays in stay-id order."""
    ids = stays.select(pl.col("stay_id").cast(pl.Int64)).unique().sort("stay_id")
    return ids.with_columns(part=(pl.int_range(pl.len(), dtype=pl.UInt32) // part_stays))


@contextmanager
def _scratch_dir(path: Path) -> Iterator[Path]:
    """A temporary folder next to ``path``, removed when the block ends (on success and on failure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".parts", dir=path.parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _partitioned_sink(plan: pl.LazyFrame, parts: pl.DataFrame, n_parts: int, scratch: Path) -> pl.LazyFrame:
    """The events, unsorted, as parquet files under ``scratch/part=<n>/``: kept events in the partition
    of their stay, the dropped ones (to be counted) in partition ``n_parts``."""
    part = (
        pl.when(pl.col("status") == STATUS["kept"]).then(pl.col("part")).otherwise(pl.lit(n_parts, pl.UInt32))
    )
    with_part = plan.join(parts.lazy(), on="stay_id", how="left", maintain_order="none").with_columns(
        part=part
    )
    target = pl.PartitionBy(scratch, key="part", include_key=False)
    return with_part.sink_parquet(target, compression="lz4", statistics=False, lazy=True)


def _partition_files(scratch: Path, part: int) -> list[Path]:
    return sorted((scratch / f"part={part}").glob("*.parquet"))


def _partition_pieces(files: list[Path], stay_ids: np.ndarray) -> Iterator[pl.DataFrame]:
    """The events of one partition (of the sorted ``stay_ids``), in memory at most :data:`PART_ROWS`
    rows at a time: a partition of stays with many events is read in several ranges of its stays."""
    scan = pl.scan_parquet(files, schema=EVENT_COLUMNS | STATUS_COLUMN)
    n_rows = scan.select(pl.len()).collect().item()
    n_pieces = min(max(-(-n_rows // PART_ROWS), 1), len(stay_ids))
    if n_pieces == 1:
        yield scan.collect(engine="streaming")
        return
    for ids in np.array_split(stay_ids, n_pieces):  # streaming: the whole partition is never decoded
        yield scan.filter(pl.col("stay_id").is_between(int(ids[0]), int(ids[-1]))).collect(engine="streaming")


def _write_sorted(
    scratch: Path, parts: pl.DataFrame, out: Path, metadata: dict[str, str]
) -> tuple[int, pl.DataFrame]:
    """Sort the kept events under ``scratch`` one partition (or piece of one) at a time into the parquet
    file ``out``; return the number of stays with events and the counts per variable and status."""
    n_with = 0
    counts = []
    stays = {
        int(k[0]): frame["stay_id"].to_numpy()
        for k, frame in parts.partition_by("part", as_dict=True).items()
    }

    def partitions(*_: Any) -> Iterator[pl.DataFrame]:
        nonlocal n_with
        for part, stay_ids in sorted(stays.items()):
            files = _partition_files(scratch, part)
            for events in _partition_pieces(files, stay_ids) if files else ():
                counts.append(_status_counts(events))
                events = in_event_order(events.drop("status"))
                n_with += events["stay_id"].n_unique()
                yield events

    register_io_source(partitions, schema=EVENT_COLUMNS).sink_parquet(
        out, row_group_size=ROW_GROUP_SIZE, metadata=metadata
    )
    dropped = _partition_files(scratch, len(stays))
    if dropped:  # counted as it streams: it holds every dropped row (orphan labs of other admissions...)
        counts.append(
            pl.scan_parquet(dropped, schema=EVENT_COLUMNS | STATUS_COLUMN)
            .group_by("variable", "status")
            .agg(pl.len().cast(pl.Int64).alias("n"))
            .collect(engine="streaming")
        )
    if not counts:
        return n_with, _status_counts(pl.DataFrame(schema=EVENT_COLUMNS | STATUS_COLUMN))
    return n_with, pl.concat(counts).group_by("variable", "status").agg(pl.col("n").sum())


def _status_counts(events: pl.DataFrame) -> pl.DataFrame:
    """Rows per variable and status (variable, status, n); one numpy pass (polars' group-by costs a
    sizeable part of the partition step on millions of rows)."""
    n_status = len(STATUS)
    variable = events["variable"].fill_null(0).to_numpy().astype(np.int64)
    cell = variable * n_status + events["status"].to_numpy()
    counts = np.bincount(cell, minlength=n_status)
    cells = np.flatnonzero(counts)
    return pl.DataFrame(
        {"variable": cells // n_status, "status": cells % n_status, "n": counts[cells]},
        schema={"variable": pl.UInt8, "status": pl.UInt8, "n": pl.Int64},
    )


def _summary(
    source: EhrSource,
    options: EventOptions,
    n_stays: int,
    n_with: int,
    counts: pl.DataFrame,
    unknown_item: int,
) -> dict[str, Any]:
    spec = channel_spec()
    per_var = {name: dict.fromkeys(COUNT_NAMES, 0) for name in spec.names}
    names = {code: name for name, code in STATUS.items()}
    orphans = 0
    for variable, status, n in counts.iter_rows():
        if status == STATUS["orphan"]:
            orphans += int(n)
            continue
        entry = per_var[spec.names[variable]]
        entry[names[status]] += int(n)
        entry["linked"] += int(n)
    return {
        "source": source.description,
        "options": asdict(options),
        "stays": n_stays,
        "stays_with_events": n_with,
        "rows_unknown_item": unknown_item,
        "rows_orphan": orphans,
        "rows_linked": sum(v["linked"] for v in per_var.values()),
        "rows_kept": sum(v["kept"] for v in per_var.values()),
        "variables": per_var,
        "omnifuse_version": omnifuse.__version__,
    }


def summary_path(path: str | Path) -> Path:
    """``events.parquet`` -> ``events.json`` (the extraction summary)."""
    return Path(path).with_suffix(".json")


def read_events_summary(path: str | Path) -> dict[str, Any]:
    """The extraction summary of an events file (raises naming the file when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EHR events file not found: {path}")
    if META_KEY not in pl.read_parquet_metadata(path):
        raise ValueError(f"{path}: not an EHR events file (no '{META_KEY}' metadata)")
    side = summary_path(path)
    if not side.is_file():
        raise FileNotFoundError(f"EHR events summary not found: {side} (written with {path.name})")
    return json.loads(side.read_text(encoding="utf-8"))


def scan_events(path: str | Path) -> pl.LazyFrame:
    """Lazy scan of an events file with an ``hours`` column (``us`` / 3.6e9)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"EHR events file not found: {path}")
    if META_KEY not in pl.read_parquet_metadata(path):
        raise ValueError(f"{path}: not an EHR events file (no '{META_KEY}' metadata)")
    return pl.scan_parquet(path).with_columns(hours=pl.col("us") / US_PER_HOUR)


def log_summary(summary: dict[str, Any]) -> None:
    """Counts per variable: what was read, kept and dropped (no patient data)."""
    log.info(
        "%s: %d events of the 17 variables inside ICU stays, %d kept for %d of %d stays",
        summary["source"],
        summary["rows_linked"],
        summary["rows_kept"],
        summary["stays_with_events"],
        summary["stays"],
    )
    if "rows_unknown_item" in summary:  # summaries of older versions lack these counts
        log.info(
            "  dropped before: %d rows of items that feed no variable, %d rows of no ICU stay",
            summary["rows_unknown_item"],
            summary["rows_orphan"],
        )
    for name, c in summary["variables"].items():
        if c["no_value"] or c["unknown_category"] or c["outlier"] or not c["kept"]:
            log.info(
                "  %-36s kept %d; dropped: no value %d, unknown category %d, impossible value %d",
                name,
                c["kept"],
                c["no_value"],
                c["unknown_category"],
                c["outlier"],
            )
