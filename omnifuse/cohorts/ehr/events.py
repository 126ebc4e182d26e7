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
category index for categorical variables). ``omnifuse ehr extract`` writes it as a parquet file sorted
by ``stay_id`` (the order of events within a stay is not fixed) and the extraction summary (counts per
variable) as a JSON file next to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl

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
STAY_COLUMNS = ("stay_id", "subject_id", "hadm_id", "intime", "outtime")
LB_TO_KG = 0.453592
# divisors of the conversions travel as a column: polars divides by a literal through its reciprocal
# (35 / 100 would be 0.35000000000000003), by a column exactly, as the reference's numpy does
DIVISORS = {"Temperature": 9.0, "Fraction inspired oxygen": 100.0}
OZ_PER_LB = 16.0
UNIT_CODES = {"": 0, "degF": 1, "lb": 2, "oz": 3, "inch": 4}  # units that need a conversion
STATUS = {"kept": 0, "no_value": 1, "unknown_category": 2, "outlier": 3}
COUNT_NAMES = ("linked", "kept", "no_value", "unknown_category", "outlier")


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
        (0 kept, 1 no value, 2 unknown category, 3 impossible value)."""
        keys = ["stay_id", "intime", "outtime"] + ([events.link] if events.link != "stay_id" else [])
        # integer microseconds: exact window tests (hours are divided exactly after collecting)
        us = (pl.col("charttime") - pl.col("intime")).dt.total_microseconds()
        los = (pl.col("outtime") - pl.col("intime")).dt.total_microseconds()
        eps_us = round(EPS * US_PER_HOUR)
        linked = (
            events.scan.join(self.items.lazy(), on="itemid", how="inner", maintain_order="none")
            .drop([c for c in ("stay_id", "hadm_id", "subject_id") if c != events.link])
            .join(stays.lazy().select(keys), on=events.link, how="inner", maintain_order="none")
            .with_columns(us=us, los=los)
            .filter((pl.col("us") > -eps_us) & (pl.col("us") < pl.col("los") + eps_us))
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
            pl.when(no_value)
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


def _plan(
    source: EhrSource, options: EventOptions, stays: pl.DataFrame | None
) -> tuple[list[tuple[str, pl.LazyFrame]], int]:
    """One streaming plan per event table of ``source`` (with ``status``); number of stays."""
    cleaner = EventCleaner(options)
    if stays is None:
        stays = stay_windows(source.tables())
    stays = stays.select(STAY_COLUMNS)
    plans = []
    for events_scan in source.event_scans(cleaner.itemids):
        log.info("scanning %s", events_scan.name)
        plans.append((events_scan.name, cleaner.plan(events_scan, stays)))
    return plans, stays.height


def _run(
    plans: list[tuple[str, pl.LazyFrame]], kept_target: Callable[[pl.LazyFrame], pl.LazyFrame]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Execute the plans as one streaming query (each table scanned once; a third output would scan
    again): the kept events (through ``kept_target``) and the counts per variable and status."""
    plan = pl.concat([p for _, p in plans]) if len(plans) > 1 else plans[0][1]
    try:
        out = pl.collect_all(
            [kept_target(plan), plan.group_by("variable", "status").len()],
            engine="streaming",
        )
    except pl.exceptions.PolarsError as exc:
        for name, single in plans:  # which table? (error path only: rerun them one by one)
            try:
                single.select(pl.len()).collect(engine="streaming")
            except pl.exceptions.PolarsError as inner:
                raise SourceError(f"{name}: cannot read events ({str(inner).splitlines()[0]})") from inner
        raise SourceError(f"cannot read events ({str(exc).splitlines()[0]})") from exc
    return out[0], out[1]


def _kept(plan: pl.LazyFrame) -> pl.LazyFrame:
    return plan.filter(pl.col("status") == STATUS["kept"]).select(list(EVENT_COLUMNS))


def extract_events(
    source: EhrSource, options: EventOptions, stays: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Scan ``source`` once; return the clean events of ``stays`` (default: every ICU stay) in memory
    with the summary (options, source, per-variable counts of linked / kept / dropped rows)."""
    plans, n_stays = _plan(source, options, stays)
    events, counts = _run(plans, _kept)
    return events, _summary(source, options, n_stays, events["stay_id"].n_unique(), counts)


def extract_events_to(
    path: str | Path, source: EhrSource, options: EventOptions, stays: pl.DataFrame | None = None
) -> dict[str, Any]:
    """Like :func:`extract_events`, streaming the events into the parquet file ``path`` (atomically;
    memory stays bounded) and the summary into ``{path stem}.json`` next to it."""
    path = Path(path)
    plans, n_stays = _plan(source, options, stays)
    provenance = {"source": source.description, "options": asdict(options)}
    marker = {META_KEY: json.dumps(provenance, sort_keys=True)}
    with atomic_path(path) as tmp:
        _, counts = _run(
            plans,
            # sorted by stay: the feature stage then slices stays without gathering rows
            lambda plan: (
                _kept(plan)
                .sort("stay_id")
                .sink_parquet(tmp, lazy=True, row_group_size=1 << 20, metadata=marker)
            ),
        )
        n_with = pl.scan_parquet(tmp).select(pl.col("stay_id").n_unique()).collect().item()
    summary = _summary(source, options, n_stays, n_with, counts)
    write_text_atomic(summary_path(path), json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def _summary(
    source: EhrSource, options: EventOptions, n_stays: int, n_with: int, counts: pl.DataFrame
) -> dict[str, Any]:
    spec = channel_spec()
    per_var = {name: dict.fromkeys(COUNT_NAMES, 0) for name in spec.names}
    names = {code: name for name, code in STATUS.items()}
    for variable, status, n in counts.iter_rows():
        entry = per_var[spec.names[variable]]
        entry[names[status]] += int(n)
        entry["linked"] += int(n)
    return {
        "source": source.description,
        "options": asdict(options),
        "stays": n_stays,
        "stays_with_events": n_with,
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
