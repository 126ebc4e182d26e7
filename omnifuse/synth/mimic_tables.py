"""Writers of the MIMIC-IV tables of the synthetic hospital, in the v2.x or v1.0 layout.

Columns come from :mod:`omnifuse.cohorts.mimic.schema`; the frames built here hold a superset and each
layout selects its own columns (``race`` becomes ``ethnicity`` in v1.0). Files are deterministic gzip
CSV: same population, same bytes.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
from tqdm import tqdm

from omnifuse.cohorts.mimic.schema import MIMIC_IV_LAYOUTS
from omnifuse.cohorts.phenotypes import PhenotypeGroup
from omnifuse.formats.atomic import atomic_path, gzip_bytes, gzip_writer
from omnifuse.synth import mimic_items as mi
from omnifuse.synth.mimic_events import (
    FILLER,
    FILLER_UNITS,
    TEXT_VALUES,
    StayChunk,
    chart_chunk,
    filler_rows,
    format_numbers,
    lab_chunk,
    text_column,
    vital_offsets,
)
from omnifuse.synth.population import CAREUNITS, DAY, MINUTE, Population
from omnifuse.synth.rng import keyed_rng

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CHART_CHUNK = 1000  # stays per chartevents chunk (fixed: the random streams are keyed on it)
MEMBER_BYTES = 32 << 20  # text per gzip member of chartevents with filler rows (compressed in parallel)
LAB_CHUNK = 2000  # admissions per labevents chunk

ICD_DICTIONARY = "icd_titles_demo.csv"  # titles of the demo codes and of codes in no benchmark group

ADMISSION_TYPES = ("EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "SURGICAL SAME DAY ADMISSION")
ADMISSION_LOCATIONS = (
    "EMERGENCY ROOM",
    "TRANSFER FROM HOSPITAL",
    "PHYSICIAN REFERRAL",
    "CLINIC REFERRAL",
    "PACU",
)
DISCHARGE_LOCATIONS = (
    "HOME",
    "HOME HEALTH CARE",
    "SKILLED NURSING FACILITY",
    "REHAB",
    "CHRONIC/LONG TERM ACUTE CARE",
)
INSURANCE = ("Medicare", "Medicaid", "Other")
MARITAL = ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED", None)
RACE = ("WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER", "UNKNOWN")
ETHNICITY_V1 = ("WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO", "ASIAN", "OTHER", "UNKNOWN")
LAB_META = {  # itemid -> (ref low, ref high, fluid)
    50931: (70.0, 100.0, "Blood"),
    50809: (70.0, 105.0, "Blood"),
    50820: (7.35, 7.45, "Blood"),
    50912: (0.5, 1.2, "Blood"),
    50983: (133.0, 145.0, "Blood"),
    51222: (13.7, 17.5, "Blood"),
}
LOINC = {50931: "2345-7", 50809: "2339-0", 50820: "11558-4", 50912: "2160-0", 50983: "2951-2", 51222: "718-7"}


def _times(seconds: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    out = pl.from_epoch(pl.Series(seconds.astype(np.int64)), time_unit="s")
    return out if missing is None else _null_where(out, missing)


def _pick(rng: np.random.Generator, options: tuple, n: int, p: list[float] | None = None) -> list:
    return [options[i] for i in rng.choice(len(options), size=n, p=p)]


def _write_table(root: Path, layout: str, table: str, frame: pl.DataFrame) -> None:
    """Write ``frame`` as ``{root}/{table}.csv.gz`` with exactly the layout's columns for that table."""
    if layout == "v1" and "race" in frame.columns:
        frame = frame.rename({"race": "ethnicity"})
    frame = frame.select(MIMIC_IV_LAYOUTS[layout][table])
    with gzip_writer(root / f"{table}.csv.gz") as gz:
        _append_csv(gz, frame, header=True)


def write_core_tables(
    root: Path,
    pop: Population,
    groups: list[PhenotypeGroup],
    layout: str,
    seed: int,
    filler_items: bool = False,
) -> None:
    """patients, admissions, diagnoses_icd, dictionaries and icustays (``filler_items``: ``d_items`` also
    lists the filler items of :func:`write_chartevents`)."""
    rng = keyed_rng(seed, "admin-tables")
    pat, adm, st = pop.patients, pop.admissions, pop.stays
    base = "core" if layout == "v1" else "hosp"
    dod = pat["dod"]
    dod_dates = pl.from_epoch(pl.Series(np.maximum(dod, 0) // DAY), time_unit="d")
    patients = pl.DataFrame(
        {
            "subject_id": pat["subject_id"],
            "gender": pat["gender"],
            "anchor_age": pat["anchor_age"],
            "anchor_year": pat["anchor_year"],
            "anchor_year_group": pat["anchor_year_group"],
            "dod": dod_dates.set(pl.Series(dod < 0), None),
        }
    )
    _write_table(root, layout, f"{base}/patients", patients)

    n = len(adm["hadm_id"])
    died = adm["hospital_expire_flag"] == 1
    race = ETHNICITY_V1 if layout == "v1" else RACE
    pat_race = _pick(rng, race, len(pat["subject_id"]), [0.62, 0.15, 0.06, 0.05, 0.07, 0.05])
    discharge = np.where(
        died, "DIED", np.asarray(_pick(rng, DISCHARGE_LOCATIONS, n, [0.4, 0.25, 0.2, 0.1, 0.05]))
    )
    admissions = pl.DataFrame(
        {
            "subject_id": adm["subject_id"],
            "hadm_id": adm["hadm_id"],
            "admittime": _times(adm["admittime"]),
            "dischtime": _times(adm["dischtime"]),
            "deathtime": _times(adm["deathtime"], ~died),
            "admission_type": _pick(rng, ADMISSION_TYPES, n, [0.55, 0.2, 0.12, 0.08, 0.05]),
            "admit_provider_id": [f"P{v:05X}" for v in rng.integers(0, 16**5, n)],
            "admission_location": _pick(rng, ADMISSION_LOCATIONS, n, [0.6, 0.15, 0.1, 0.1, 0.05]),
            "discharge_location": discharge,
            "insurance": _pick(rng, INSURANCE, n, [0.45, 0.1, 0.45]),
            "language": _pick(rng, ("ENGLISH", "?"), n, [0.9, 0.1]),
            "marital_status": _pick(rng, MARITAL, n, [0.45, 0.3, 0.12, 0.08, 0.05]),
            "race": [pat_race[p] for p in adm["patient_index"]],
            "edregtime": _times(adm["edregtime"], ~adm["has_ed"]),
            "edouttime": _times(adm["edouttime"], ~adm["has_ed"]),
            "hospital_expire_flag": adm["hospital_expire_flag"],
        }
    )
    _write_table(root, layout, f"{base}/admissions", admissions)

    diagnoses, dictionary = _diagnoses(pop, groups, rng)
    _write_table(root, layout, "hosp/diagnoses_icd", diagnoses)
    _write_table(root, layout, "hosp/d_icd_diagnoses", dictionary)

    labitems = [it for it in mi.ITEMS if it.linksto == "labevents"]
    d_lab = pl.DataFrame(
        {
            "itemid": [it.itemid for it in labitems],
            "label": [it.label for it in labitems],
            "fluid": [LAB_META[it.itemid][2] for it in labitems],
            "category": [it.category for it in labitems],
            "loinc_code": [LOINC[it.itemid] for it in labitems],
        }
    )
    _write_table(root, layout, "hosp/d_labitems", d_lab)

    first = np.asarray(CAREUNITS)[st["careunit"]]
    last = np.where(st["transfer"], np.asarray(CAREUNITS)[st["careunit2"]], first)
    icustays = pl.DataFrame(
        {
            "subject_id": st["subject_id"],
            "hadm_id": st["hadm_id"],
            "stay_id": st["stay_id"],
            "first_careunit": first,
            "last_careunit": last,
            "intime": _times(st["intime"]),
            "outtime": _times(st["outtime"]),
            "los": (st["outtime"] - st["intime"]) / DAY,
        }
    )
    _write_table(root, layout, "icu/icustays", icustays)

    chart_items = [it for it in mi.ITEMS if it.linksto == "chartevents"]
    if filler_items:
        known = {it.itemid for it in chart_items}
        chart_items += [
            mi.Item(f.itemid, f.label, f.label, "chartevents", f.category, f.unit, f.param_type, None)
            for f in FILLER
            if f.itemid not in known
        ]
    d_items = pl.DataFrame(
        {
            "itemid": [it.itemid for it in chart_items],
            "label": [it.label for it in chart_items],
            "abbreviation": [it.abbreviation for it in chart_items],
            "linksto": [it.linksto for it in chart_items],
            "category": [it.category for it in chart_items],
            "unitname": [it.unit for it in chart_items],
            "param_type": [it.param_type for it in chart_items],
            "lownormalvalue": pl.Series([None] * len(chart_items), dtype=pl.Float64),
            "highnormalvalue": pl.Series([None] * len(chart_items), dtype=pl.Float64),
        },
        schema_overrides={"unitname": pl.String},
    )
    _write_table(root, layout, "icu/d_items", d_items)


def icd_dictionary() -> pl.DataFrame:
    """The demo ICD dictionary (icd_code, icd_version, long_title) shipped with the package."""
    path = resources.files("omnifuse.resources").joinpath(ICD_DICTIONARY)
    return pl.read_csv(path.read_bytes(), schema_overrides={"icd_code": pl.String, "icd_version": pl.Int64})


def _diagnoses(
    pop: Population, groups: list[PhenotypeGroup], rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per admission: one or two codes of every positive phenotype (ICD-9 before the patient's switch
    date, ICD-10 after) plus 1-4 codes of no benchmark group, in shuffled sequence order."""
    adm, st, pat = pop.admissions, pop.stays, pop.patients
    n_adm = len(adm["hadm_id"])
    positive = np.zeros((n_adm, len(groups)), bool)
    for j, key in enumerate(pop.phenotype_keys):
        np.logical_or.at(positive[:, j], st["admission_index"], pop.labels[key])
    version = np.where(adm["admittime"] >= pat["icd10_from"][adm["patient_index"]], 10, 9)
    for v in (9, 10):
        empty = [g.name for g in groups if not g.codes_for(v)]
        if empty:
            raise ValueError(f"phenotype groups without ICD-{v} codes cannot be synthesised: {empty}")
    dictionary = icd_dictionary()
    in_groups = {(c, v) for g in groups for v in (9, 10) for c in g.codes_for(v)}
    distractors = {
        v: sorted(
            c
            for c, ver in dictionary.select("icd_code", "icd_version").iter_rows()
            if ver == v and (c, v) not in in_groups
        )
        for v in (9, 10)
    }
    rows: dict[str, list] = {
        "subject_id": [],
        "hadm_id": [],
        "seq_num": [],
        "icd_code": [],
        "icd_version": [],
    }
    for a in range(n_adm):
        v = int(version[a])
        codes: list[str] = []
        for j in np.flatnonzero(positive[a]):
            options = groups[j].codes_for(v)
            k = min(len(options), 1 + int(rng.random() < 0.25))
            codes.extend(str(c) for c in rng.choice(options, size=k, replace=False))
        codes.extend(str(c) for c in rng.choice(distractors[v], size=int(rng.integers(1, 5)), replace=False))
        codes = [codes[i] for i in rng.permutation(len(codes))]
        rows["subject_id"].extend([int(adm["subject_id"][a])] * len(codes))
        rows["hadm_id"].extend([int(adm["hadm_id"][a])] * len(codes))
        rows["seq_num"].extend(range(1, len(codes) + 1))
        rows["icd_code"].extend(codes)
        rows["icd_version"].extend([v] * len(codes))
    # codes of user-supplied definitions that the demo dictionary does not know get a generic title
    known = set(dictionary.select("icd_code", "icd_version").iter_rows())
    extra = [
        (c, v, f"{g.name} (synthetic code)")
        for g in groups
        for v in (9, 10)
        for c in g.codes_for(v)
        if (c, v) not in known
    ]
    if extra:
        dictionary = pl.concat([dictionary, pl.DataFrame(extra, schema=dictionary.schema, orient="row")])
    return pl.DataFrame(rows), dictionary.unique(["icd_code", "icd_version"]).sort("icd_code", "icd_version")


def _event_frame(subject_id: np.ndarray, ev: dict[str, np.ndarray], rng: np.random.Generator) -> pl.DataFrame:
    """Columns shared by chart and lab events: times, value text, valuenum, unit."""
    n = len(ev["time"])
    valuenum, number_text = format_numbers(ev["valuenum"], ev["itemid"])
    is_text = ev["text"] >= 0
    value = pl.select(pl.when(pl.Series(is_text)).then(text_column(ev["text"])).otherwise(number_text))
    units = {it.itemid: it.unit for it in mi.ITEMS if it.param_type == "Numeric"} | FILLER_UNITS
    store = ev["time"] + (rng.uniform(1, 120, n) * MINUTE).astype(np.int64) // MINUTE * MINUTE
    return pl.DataFrame(
        {
            "subject_id": subject_id,
            "itemid": ev["itemid"],
            "charttime": _times(ev["time"]),
            "storetime": _times(store),
            "value": value.to_series(),
            "valuenum_float": valuenum,
            "valuenum": number_text.set(pl.Series(np.isnan(valuenum)), None),
            "valueuom": pl.Series(ev["itemid"]).replace_strict(units, return_dtype=pl.String, default=None),
        }
    )


def _append_csv(gz: BinaryIO, frame: pl.DataFrame, header: bool) -> None:
    gz.write(
        frame.write_csv(include_header=header, datetime_format=TIME_FORMAT, null_value="").encode("utf-8")
    )


def _null_where(series: pl.Series, mask: np.ndarray, value: object = None) -> pl.Series:
    return series.set(pl.Series(mask), value) if mask.any() else series


def write_chartevents(
    path: Path,
    pop: Population,
    layout: str,
    seed: int,
    ehr_signal: float,
    error_rate: float,
    progress: bool = False,
    filler_ratio: float = 0.0,
    workers: int = 1,
) -> int:
    """Stream ``icu/chartevents`` a chunk of stays at a time; return the number of rows.

    ``filler_ratio``: rows of items that feed no variable per row of a variable (:func:`filler_rows`;
    0: none added). With filler rows (six times more rows), the text is compressed as gzip members of
    at most :data:`MEMBER_BYTES` each by ``workers`` threads while the next chunk is generated (a valid
    gzip file, the same bytes with any number of workers); without, the file is one gzip stream as
    before."""
    frames = _chart_frames(pop, layout, seed, ehr_signal, error_rate, filler_ratio)
    chunks = -(-pop.n_stays // CHART_CHUNK)
    frames = tqdm(frames, total=chunks, desc="chartevents", unit="chunk", disable=not progress)
    total = 0
    if filler_ratio > 0:
        with (
            atomic_path(path) as tmp,
            open(tmp, "wb") as out,
            ThreadPoolExecutor(max_workers=max(workers, 1)) as pool,  # zlib releases the GIL
        ):
            pending: deque[tuple[int, Future[bytes]]] = deque()
            for c, frame in frames:
                text = _csv_bytes(frame, header=c == 0)
                pending.extend(
                    (c, pool.submit(gzip_bytes, piece)) for piece in _line_pieces(text, MEMBER_BYTES)
                )
                total += frame.height
                while pending and pending[0][0] < c:  # the text of at most two chunks in memory
                    out.write(pending.popleft()[1].result())
            for _, future in pending:
                out.write(future.result())
        return total
    with gzip_writer(path) as gz:
        for c, frame in frames:
            gz.write(_csv_bytes(frame, header=c == 0))
            total += frame.height
    return total


def _chart_frames(
    pop: Population, layout: str, seed: int, ehr_signal: float, error_rate: float, filler_ratio: float
) -> Iterator[tuple[int, pl.DataFrame]]:
    """(chunk number, its chartevents rows in file order: by subject, stay, time and item id)."""
    columns = MIMIC_IV_LAYOUTS[layout]["icu/chartevents"]
    st = pop.stays
    offsets = vital_offsets(seed, pop.n_stays)
    for c, start in enumerate(range(0, pop.n_stays, CHART_CHUNK)):
        index = np.arange(start, min(start + CHART_CHUNK, pop.n_stays))
        rng = keyed_rng(seed, "chartevents", c)
        chunk = StayChunk.from_population(pop, index, offsets)
        ev = chart_chunk(chunk, rng, ehr_signal, error_rate).arrays()
        if filler_ratio > 0:  # a stream of its own: the other rows are those without filler
            extra = filler_rows(
                ev["stay"],
                ev["time"],
                ev["itemid"],
                filler_ratio,
                keyed_rng(seed, "chartevents-filler", c),
                len(TEXT_VALUES),
            )
            ev = {k: np.concatenate([v, extra[k]]) for k, v in ev.items()}
        pos = index[ev["stay"]]
        n = len(pos)
        frame = _event_frame(st["subject_id"][pos], ev, rng).with_columns(
            hadm_id=pl.Series(st["hadm_id"][pos]),
            stay_id=pl.Series(st["stay_id"][pos]),
            caregiver_id=_null_where(pl.Series(rng.integers(10_000, 100_000, n)), rng.random(n) < 0.01),
            warning=pl.Series((rng.random(n) < 0.004).astype(np.int64)),
        )
        # stable sort by subject, stay, charttime, item id (numpy: several times faster than polars here)
        order = np.lexsort((ev["itemid"], ev["time"], st["stay_id"][pos], st["subject_id"][pos]))
        yield c, frame[order].select(columns)


def _line_pieces(text: bytes, size: int) -> Iterator[memoryview]:
    """``text`` cut after the first newline at or past every ``size`` bytes (views, no copies)."""
    view, start = memoryview(text), 0
    while start < len(text):
        cut = text.find(b"\n", start + size) if start + size < len(text) else -1
        stop = len(text) if cut < 0 else cut + 1
        yield view[start:stop]
        start = stop


def _csv_bytes(frame: pl.DataFrame, header: bool) -> bytes:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=header, datetime_format=TIME_FORMAT, null_value="")
    return buffer.getvalue()


def write_labevents(
    path: Path, pop: Population, layout: str, seed: int, ehr_signal: float, progress: bool = False
) -> int:
    """Stream ``hosp/labevents`` a chunk of admissions at a time; return the number of rows."""
    columns = MIMIC_IV_LAYOUTS[layout]["hosp/labevents"]
    adm = pop.admissions
    n_adm = len(adm["hadm_id"])
    next_id = next_specimen = 1
    with gzip_writer(path) as gz:
        chunks = range(0, n_adm, LAB_CHUNK)
        for c, start in enumerate(tqdm(chunks, desc="labevents", unit="chunk", disable=not progress)):
            index = np.arange(start, min(start + LAB_CHUNK, n_adm))
            rng = keyed_rng(seed, "labevents", c)
            buf, outpatient = lab_chunk(pop, index, rng, ehr_signal)
            ev = buf.arrays()
            a = index[ev["stay"]]
            n = len(a)
            frame = _event_frame(adm["subject_id"][a], ev, rng)
            ref = np.array([LAB_META[int(i)][:2] for i in ev["itemid"]]).reshape(n, 2)
            vals = frame["valuenum_float"].to_numpy()
            abnormal = (vals < ref[:, 0]) | (vals > ref[:, 1])
            gas = np.isin(ev["itemid"], [50820, 50809])
            # labs drawn together (same admission, time and panel) share a specimen id
            _, draw = np.unique(np.stack([a, ev["time"], gas]), axis=1, return_inverse=True)
            n_draws = int(draw.max()) + 1 if n else 0
            specimen = 10_000_000 + next_specimen + rng.permutation(n_draws)[draw.ravel()]
            next_specimen += n_draws
            provider = pl.Series([f"P{v:05X}" for v in rng.integers(0, 16**5, n)], dtype=pl.String)
            frame = frame.with_columns(
                hadm_id=_null_where(pl.Series(adm["hadm_id"][a]), outpatient),
                specimen_id=pl.Series(specimen, dtype=pl.Int64),
                order_provider_id=_null_where(provider, rng.random(n) < 0.3),
                ref_range_lower=pl.Series(ref[:, 0]),
                ref_range_upper=pl.Series(ref[:, 1]),
                flag=_null_where(pl.Series(["abnormal"] * n, dtype=pl.String), ~abnormal),
                priority=pl.Series(np.where(gas, "STAT", "ROUTINE")),
                comments=_null_where(pl.Series(["___"] * n, dtype=pl.String), rng.random(n) >= 0.02),
            ).sort("subject_id", "charttime", "itemid", maintain_order=True)
            frame = frame.with_columns(labevent_id=pl.int_range(next_id, next_id + n, dtype=pl.Int64))
            next_id += n
            _append_csv(gz, frame.select(columns), header=c == 0)
    return next_id - 1
