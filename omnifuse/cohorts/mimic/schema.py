"""File names and column lists of the MIMIC releases the pipeline reads.

MIMIC-IV v2.x keeps patients and admissions under ``hosp/``; v1.0 kept them under ``core/`` and called
``race`` ``ethnicity`` (and lacked the provider/caregiver columns). The synthetic generator writes these
exact columns and the readers check them, naming the file and the missing column.
"""

from __future__ import annotations

MIMIC_IV_V2: dict[str, tuple[str, ...]] = {
    "hosp/patients": ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"),
    "hosp/admissions": (
        "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
        "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
        "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag",
    ),
    "hosp/diagnoses_icd": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "hosp/d_icd_diagnoses": ("icd_code", "icd_version", "long_title"),
    "hosp/d_labitems": ("itemid", "label", "fluid", "category"),
    "hosp/labevents": (
        "labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id", "charttime",
        "storetime", "value", "valuenum", "valueuom", "ref_range_lower", "ref_range_upper", "flag",
        "priority", "comments",
    ),
    "icu/icustays": (
        "subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los",
    ),
    "icu/chartevents": (
        "subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
        "valuenum", "valueuom", "warning",
    ),
    "icu/d_items": (
        "itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type",
        "lownormalvalue", "highnormalvalue",
    ),
}  # fmt: skip

MIMIC_IV_V1: dict[str, tuple[str, ...]] = {
    "core/patients": MIMIC_IV_V2["hosp/patients"],
    "core/admissions": tuple(
        "ethnicity" if c == "race" else c for c in MIMIC_IV_V2["hosp/admissions"] if c != "admit_provider_id"
    ),
    "hosp/diagnoses_icd": MIMIC_IV_V2["hosp/diagnoses_icd"],
    "hosp/d_icd_diagnoses": MIMIC_IV_V2["hosp/d_icd_diagnoses"],
    "hosp/d_labitems": (*MIMIC_IV_V2["hosp/d_labitems"], "loinc_code"),
    "hosp/labevents": tuple(c for c in MIMIC_IV_V2["hosp/labevents"] if c != "order_provider_id"),
    "icu/icustays": MIMIC_IV_V2["icu/icustays"],
    "icu/chartevents": tuple(c for c in MIMIC_IV_V2["icu/chartevents"] if c != "caregiver_id"),
    "icu/d_items": MIMIC_IV_V2["icu/d_items"],
}

MIMIC_IV_LAYOUTS = {"v2": MIMIC_IV_V2, "v1": MIMIC_IV_V1}

# MIMIC-CXR-JPG 2.0.0 (files relative to its root) and MIMIC-CXR reports (files/p../p{subject}/s{study}.txt).
CXR_METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
CXR_SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
CXR_METADATA_COLUMNS = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)  # fmt: skip
CXR_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")


def cxr_study_dir(subject_id: int, study_id: int) -> str:
    """``files/p10/p10000032/s50414267``: the MIMIC-CXR folder of one study (relative)."""
    sid = str(subject_id)
    return f"files/p{sid[:2]}/p{sid}/s{study_id}"


def cxr_image_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    return f"{cxr_study_dir(subject_id, study_id)}/{dicom_id}.jpg"


def cxr_report_path(subject_id: int, study_id: int) -> str:
    return f"{cxr_study_dir(subject_id, study_id)}.txt"
