"""``omnifuse ehr export-episodes``: per-stay time series in the mimic3-benchmarks episode format.

For every stay of the task cohort (same rules as the cohort table) with at least one event in its
window, ``{stay_id}_timeseries.csv`` holds one row per distinct event time: ``Hours`` (since ICU intime)
and the 17 variables in the reference column order, with clean values (°C, kg, cm, FiO2 as a fraction;
categories as their raw strings) and empty cells where nothing was charted. Events at the same time
for the same variable keep the largest value, as the reference does. The window is ``[0, 48 h]`` for
``ihm`` and ``[0, length of stay]`` for ``pheno``.

``listfile.csv`` lists the files with their labels like the mimic3-benchmarks task folders:
``stay,y_true`` (ihm) or ``stay,period_length,<25 phenotype names>`` (pheno).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from omnifuse.cohorts.build import CohortOptions, mimic_task_stays
from omnifuse.cohorts.ehr.channels import channel_spec
from omnifuse.cohorts.ehr.discretizer import EPS, _tie_keys
from omnifuse.cohorts.ehr.events import US_PER_HOUR, extract_events, log_summary
from omnifuse.cohorts.ehr.options import EventOptions
from omnifuse.cohorts.mimic import open_source
from omnifuse.cohorts.mimic.sources import reading
from omnifuse.formats.atomic import atomic_dir

log = logging.getLogger(__name__)


def episode_table(events: pl.DataFrame) -> pl.DataFrame:
    """Wide table (stay_id, Hours, 17 text columns) from clean events (stay_id, hours, variable, value)."""
    spec = channel_spec()
    keys = _tie_keys(spec)
    width = keys.shape[1]
    cat_vars = [v.index for v in spec.variables if v.categorical]
    labels = pl.Series([c for v in spec.variables for c in (list(v.categories) + [""] * width)[:width]])
    var = pl.col("variable").cast(pl.Int64)
    code = pl.col("value").cast(pl.Int64, strict=False).clip(0, width - 1)
    is_cat = pl.col("variable").is_in(cat_vars)
    ev = events.with_columns(
        key=pl.when(is_cat)
        .then(pl.lit(pl.Series(keys.ravel())).gather(var * width + code))
        .otherwise("value")
    )
    last = ev.group_by("stay_id", "hours", "variable").agg(pl.col("value").sort_by("key").last())
    last = last.with_columns(
        text=pl.when(is_cat)
        .then(pl.lit(labels).gather(var * width + code))
        .otherwise(pl.col("value").cast(pl.String)),
        name=pl.col("variable").cast(pl.Int64),
    )
    wide = last.pivot(on="name", index=["stay_id", "hours"], values="text", aggregate_function=None)
    columns = {str(v.index): v.name for v in spec.variables}
    for idx in columns:
        if idx not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.String).alias(idx))
    return (
        wide.rename(columns)
        .rename({"hours": "Hours"})
        .select("stay_id", "Hours", *spec.names)
        .sort("stay_id", "Hours")
    )


def export_episodes(
    source_path: str | Path,
    task: str,
    out: str | Path,
    cohort_options: CohortOptions,
    event_options: EventOptions,
    fmt: str = "auto",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the episode files and ``listfile.csv`` of ``task`` under ``out`` (atomically)."""
    source = open_source(source_path, fmt)
    with reading(source):  # a damaged table is named
        ts = mimic_task_stays(source.tables(), task, cohort_options)
        events, summary = extract_events(source, event_options, stays=ts.stays)
    log_summary(summary)
    window = (pl.col("window_end") - pl.col("intime")).dt.total_microseconds()
    ends = ts.stays.select("stay_id", window.alias("end"))
    eps_us = round(EPS * US_PER_HOUR)
    events = events.join(ends, on="stay_id").filter(pl.col("us") < pl.col("end") + eps_us).drop("end")
    # hours by numpy's exact division (27 min -> 0.45, as the reference writes it)
    events = events.with_columns(pl.Series("hours", np.divide(events["us"].to_numpy(), float(US_PER_HOUR))))
    wide = episode_table(events)
    exported = wide["stay_id"].unique().sort()
    listing = ts.stays.filter(pl.col("stay_id").is_in(exported.implode()))
    name = pl.col("stay_id").cast(pl.String) + "_timeseries.csv"
    if task == "ihm":
        listfile = listing.select(name.alias("stay"), pl.col("y_ihm").alias("y_true"))
    else:
        listfile = listing.select(
            name.alias("stay"),
            pl.col("los_hours").alias("period_length"),
            *[pl.col(c).alias(n) for c, n in zip(ts.label_columns, ts.label_names, strict=True)],
        )
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for (stay,), part in tqdm(
            wide.partition_by("stay_id", as_dict=True, maintain_order=True).items(),
            desc="episodes",
            disable=not progress,
        ):
            part.drop("stay_id").write_csv(Path(tmp) / f"{stay}_timeseries.csv")
        listfile.sort("stay").write_csv(Path(tmp) / "listfile.csv")
    info = {
        "task": task,
        "stays": ts.stays.height,
        "exported": exported.len(),
        "without_events": ts.stays.height - exported.len(),
        "rows": wide.height,
    }
    log.info(
        "%s: %d episode files (%d stays of the cohort had no event in the window) in %s",
        task,
        info["exported"],
        info["without_events"],
        out,
    )
    return info
