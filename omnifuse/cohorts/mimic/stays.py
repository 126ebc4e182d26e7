"""ICU cohort rules of mimic3-benchmarks / MedFuse, applied to the normalised hospital tables.

Order and meaning (``extract_subjects`` of mimic3-benchmarks and MedFuse's ``mimic4extract``):

1. stays need an admission (``hadm_id`` present in admissions) and ``outtime`` after ``intime``;
2. ``exclude_transfers``: drop stays whose ``first_careunit`` differs from ``last_careunit``;
3. ``single_stay_admissions``: keep admissions with exactly one ICU stay *left after step 2*
   (the reference filters transfers first, then counts stays per admission);
4. ``min_age``: keep patients aged >= 18; ``age = anchor_age`` (reference) or ``admission`` (anchor_age
   + year of admission - anchor_year). MEDS has no anchor age: both use the age at admission from
   ``MEDS_BIRTH``.

In-hospital mortality of a stay's admission: ``deathtime`` within ``[admittime, dischtime]``, or the date
of death ``dod`` (midnight) within it (mimic3-benchmarks ``add_inhospital_mortality_to_icustays``).

Task rules: in-hospital mortality keeps stays with ``outtime - intime >= 48 h`` and observes
``[intime, intime + 48 h]``; phenotyping keeps every stay and observes ``[intime, outtime]``. Phenotype
labels come from the admission's diagnoses (``codes`` for ICD-9, ``codes_icd10`` for ICD-10).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import polars as pl

from omnifuse.cohorts.mimic.tables import HospitalTables
from omnifuse.cohorts.phenotypes import PhenotypeGroup

log = logging.getLogger(__name__)

EPS_HOURS = 1e-6
AGE_RULES = ("anchor_age", "admission")


@dataclass(frozen=True)
class StayRules:
    exclude_transfers: bool = True
    single_stay_admissions: bool = True
    min_age: int = 18
    age: str = "anchor_age"

    def __post_init__(self) -> None:
        if self.age not in AGE_RULES:
            raise ValueError(f"age must be one of {AGE_RULES}, got {self.age!r}")


def icu_stays(tables: HospitalTables, age: str = "anchor_age") -> pl.DataFrame:
    """Every ICU stay with its admission and patient: times, ``age``, ``los_hours`` and ``mortality``."""
    adm = tables.admissions
    stays = tables.icustays.join(
        adm.select("hadm_id", "admittime", "dischtime", "deathtime", pl.lit(True).alias("_adm")),
        on="hadm_id",
        how="left",
    ).join(tables.patients.select("subject_id", "anchor_age", "anchor_year", "birth", "dod"), on="subject_id",
           how="left")  # fmt: skip
    from_birth = ((pl.col("admittime") - pl.col("birth")).dt.total_days() / 365.2425).floor().cast(pl.Int64)
    if age == "anchor_age":
        age_expr = pl.coalesce(pl.col("anchor_age"), from_birth)
    else:
        shifted = pl.col("anchor_age") + pl.col("admittime").dt.year() - pl.col("anchor_year")
        age_expr = pl.coalesce(shifted, from_birth)

    def within(t: str) -> pl.Expr:
        return (
            pl.col(t).is_not_null() & (pl.col("admittime") <= pl.col(t)) & (pl.col("dischtime") >= pl.col(t))
        )

    return stays.with_columns(
        age=age_expr,
        los_hours=(pl.col("outtime") - pl.col("intime")).dt.total_microseconds() / 3_600_000_000,
        mortality=(within("deathtime") | within("dod")).fill_null(False).cast(pl.Int8),
        has_admission=pl.col("_adm").fill_null(False),
    ).drop("_adm")


def apply_rules(stays: pl.DataFrame, rules: StayRules) -> tuple[pl.DataFrame, dict[str, int]]:
    """Steps 1-4 of the module docstring. Returns the kept stays and the count removed by each step."""
    removed: dict[str, int] = {"icu_stays": stays.height}

    def step(name: str, frame: pl.DataFrame, keep: pl.Expr) -> pl.DataFrame:
        kept = frame.filter(keep)
        removed[name] = frame.height - kept.height
        return kept

    stays = step(
        "no_admission_or_times",
        stays,
        pl.col("has_admission") & (pl.col("outtime") > pl.col("intime")).fill_null(False),
    )
    if rules.exclude_transfers:
        stays = step("transfer", stays, pl.col("first_careunit") == pl.col("last_careunit"))
    if rules.single_stay_admissions:
        stays = step("multi_stay_admission", stays, pl.len().over("hadm_id") == 1)
    stays = step("age", stays, pl.col("age").fill_null(-1) >= rules.min_age)
    removed["kept"] = stays.height
    return stays, removed


def ihm_stays(stays: pl.DataFrame, hours: float = 48.0) -> tuple[pl.DataFrame, int]:
    """Stays of at least ``hours`` with the observation window ``[intime, intime + hours]``,
    label ``y_ihm`` = in-hospital mortality. Returns the stays and how many were too short."""
    kept = stays.filter(pl.col("los_hours") >= hours - EPS_HOURS)
    return (
        kept.with_columns(
            window_end=pl.col("intime") + pl.duration(microseconds=round(hours * 3_600_000_000)),
            y_ihm=pl.col("mortality").cast(pl.Int8),
        ),
        stays.height - kept.height,
    )


def label_column(name: str) -> str:
    """``y_<slug>`` of a phenotype group name (lower case, runs of other characters -> ``_``)."""
    return "y_" + re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def pheno_stays(
    stays: pl.DataFrame, diagnoses: pl.DataFrame, groups: list[PhenotypeGroup]
) -> tuple[pl.DataFrame, list[str]]:
    """Every stay with window ``[intime, outtime]`` and one 0/1 column per phenotype group (in
    ``groups`` order): 1 when a diagnosis of the stay's admission has one of the group's codes."""
    columns = [label_column(g.name) for g in groups]
    if len(set(columns)) != len(columns):
        raise ValueError(f"phenotype names give duplicate label columns: {columns}")
    code_map = pl.DataFrame(
        [(v, code, label_column(g.name)) for g in groups for v in (9, 10) for code in g.codes_for(v)],
        schema={"icd_version": pl.Int64, "icd_code": pl.String, "label": pl.String},
        orient="row",
    )
    hadm = stays.select("hadm_id").unique()
    positive = (
        diagnoses.join(hadm, on="hadm_id", how="semi")
        .join(code_map, on=["icd_version", "icd_code"], how="inner")
        .select("hadm_id", "label")
        .unique()
    )
    wide = stays.select("stay_id", "hadm_id").join(positive, on="hadm_id", how="left")
    labels = wide.group_by("stay_id").agg(
        [(pl.col("label") == c).any().fill_null(False).cast(pl.Int8).alias(c) for c in columns]
    )
    n_icd10 = (
        diagnoses.join(hadm, on="hadm_id", how="semi")
        .filter(pl.col("icd_version") == 10)["hadm_id"]
        .n_unique()
    )
    if n_icd10 and not any(g.codes_icd10 for g in groups):
        log.warning(
            "%d admissions are coded in ICD-10 but the phenotype definitions list ICD-9 codes only: "
            "their phenotype labels are all 0",
            n_icd10,
        )
    out = stays.join(labels, on="stay_id", how="left", maintain_order="left").with_columns(
        [pl.col(c).fill_null(0) for c in columns]
    )
    return out.with_columns(window_end=pl.col("outtime")), columns
