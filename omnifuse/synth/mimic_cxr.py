"""Chest X-ray studies of the synthetic ICU stays: schedule, findings, MIMIC-CXR-JPG files and reports.

Each stay may have studies in the emergency department before ICU admission, inside the first 48 h,
later in the stay and on the ward afterwards. Portable AP films dominate in the ICU; PA and lateral
views appear in the ED and on the ward. A study's findings follow the stay's phenotypes and severity
(scaled by ``cxr_signal``): consolidation with pneumonia, effusion/oedema/cardiomegaly with heart
failure and fluid overload, pneumothorax with pleural disease, and support devices with ventilation,
shock and pacing. A fraction of images is degraded by heavy artifacts. The report describes the same
study's findings, with its own omissions and false positives, so text and image agree only partly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tqdm import tqdm

from omnifuse.cohorts.mimic.schema import cxr_image_path, cxr_report_path
from omnifuse.synth.cxr_findings import DEVICES, SEVERITY_FIELDS, CxrFindings
from omnifuse.synth.population import HOUR, MINUTE, Population
from omnifuse.synth.rng import keyed_rng

VIEW_ROWS_RATIO = {"AP": 1.125, "PA": 1.1875, "LATERAL": 1.1875}
VIEW_MEANING = {"AP": "antero-posterior", "PA": "postero-anterior", "LATERAL": "lateral"}
EXAM = {
    ("AP",): "CHEST (PORTABLE AP)",
    ("PA", "LATERAL"): "CHEST (PA AND LAT)",
    ("AP", "LATERAL"): "CHEST (AP AND LAT)",
}

# finding -> (intercept, {label: weight}); present ~ sigmoid(intercept + cxr_signal * sum), drawn once per
# stay (every study of the stay shows it, with a little variation in severity).
FINDING_MODEL: dict[str, tuple[float, dict[str, float]]] = {
    "opacity": (-2.8, {"pneumonia": 3.2, "lower_resp": 1.2, "resp_failure": 0.6}),
    "effusion": (-2.6, {"chf": 2.0, "pleurisy": 1.8, "liver": 1.4, "fluid": 0.6, "ckd": 0.5}),
    "edema": (-3.0, {"chf": 2.4, "arf": 0.9, "ckd": 0.9, "fluid": 0.5}),
    "cardiomegaly": (-2.4, {"chf": 1.8, "htn_comp": 1.1, "cad": 0.6, "dysrhythmia": 0.6, "htn": 0.4}),
    "atelectasis": (-2.1, {"complication": 1.4, "resp_failure": 0.7, "pleurisy": 0.8}),
    "pneumothorax": (-4.6, {"pleurisy": 2.8, "complication": 1.0}),
    "hyperinflation": (-3.3, {"copd": 3.6}),
}
SIDED = {"opacity": (0.4, 0.45), "effusion": (0.25, 0.3), "pneumothorax": (0.45, 0.5)}  # P(left), P(right)
# Diffuse bilateral airspace opacity (lung injury, ARDS pattern): extent grows linearly with the stay's
# latent lung injury (standardised) above a threshold, up to whole-lung involvement.
DIFFUSE_THRESHOLD = 0.0
DIFFUSE_SPAN = 2.2
DIFFUSE_NOISE = 0.35
# Body habitus (soft-tissue excess) from the patient's body-mass index: 0 up to the first value, 1 from
# the second on (the patient's build, whatever cxr_signal says).
HABITUS_BMI = (28.0, 42.0)
# Support devices of the ICU phase: P(device | stay), before cxr_signal blends them with the base rate.
DEVICE_BASE = {"ett": 0.1, "ng_tube": 0.1, "central_line": 0.2, "pacemaker": 0.04, "sternal_wires": 0.05}
PERMANENT_DEVICES = ("pacemaker", "sternal_wires")
# A support device goes unreported with this fraction of report_omission (as often as a finding).
DEVICE_OMISSION = 1.0


@dataclass(frozen=True)
class CxrOptions:
    seed: int
    cxr_signal: float
    availability: float
    artifact_rate: float
    report_omission: float
    report_false_positive: float
    no_findings_section_prob: float
    image_columns: int


def _sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def dicom_id(seed: int, study_id: int, k: int) -> str:
    """A MIMIC-CXR-style DICOM id: five dash-separated groups of eight hex digits."""
    h = hashlib.blake2b(f"{seed}/{study_id}/{k}".encode(), digest_size=20).hexdigest()
    return "-".join(h[i : i + 8] for i in range(0, 40, 8))


def schedule_studies(pop: Population, opts: CxrOptions) -> pl.DataFrame:
    """One row per study: stay position, study time and where in the stay's course it happened."""
    rng = keyed_rng(opts.seed, "cxr-schedule")
    st = pop.stays
    n = pop.n_stays
    intime, outtime = st["intime"], st["outtime"]
    disch = pop.admissions["dischtime"][st["admission_index"]]
    rows: list[tuple[np.ndarray, np.ndarray, str]] = []

    def draw(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, phase: str, two: float = 0.0) -> None:
        k = np.where(mask & (hi > lo), 1 + (rng.random(n) < two), 0)
        s = np.repeat(np.arange(n), k)
        t = lo[s] + (rng.random(len(s)) * (hi[s] - lo[s])).astype(np.int64)
        rows.append((s, t, phase))

    window_end = np.minimum(intime + 48 * HOUR, outtime)
    # a stay spending less than a day in the ICU is less likely to be filmed there
    exposure = np.clip((window_end - intime) / (24 * HOUR), 0.0, 1.0)
    draw(rng.random(n) < opts.availability * exposure, intime + 10 * MINUTE, window_end, "window", two=0.2)
    draw(rng.random(n) < 0.4, intime - 8 * HOUR, intime - 10 * MINUTE, "ed")
    draw((rng.random(n) < 0.5) & (outtime - intime > 60 * HOUR), intime + 49 * HOUR, outtime, "icu_late", 0.3)
    draw(rng.random(n) < 0.2, outtime + HOUR, disch, "ward")
    stay = np.concatenate([r[0] for r in rows])
    time = np.concatenate([r[1] for r in rows])
    phase = np.concatenate([np.full(len(r[0]), r[2]) for r in rows])
    time = time - time % 1  # whole seconds; fractional seconds are added to StudyTime
    order = np.lexsort((time, st["subject_id"][stay]))
    stay, time, phase = stay[order], time[order], phase[order]
    ids = np.sort(rng.choice(np.arange(50_000_000, 60_000_000), size=len(stay), replace=False))
    return pl.DataFrame({"stay": stay, "study_id": rng.permutation(ids), "time": time, "phase": phase})


def _views(rng: np.random.Generator, phase: str, ventilated: bool) -> tuple[str, ...]:
    u = rng.random()
    if phase in ("window", "icu_late"):
        if ventilated or u < 0.85:
            return ("AP",)
        return ("AP", "LATERAL") if u < 0.9 else ("PA", "LATERAL")
    if phase == "ed":
        return ("AP",) if u < 0.55 else ("PA", "LATERAL")
    return ("AP",) if u < 0.4 else ("PA", "LATERAL")


@dataclass(frozen=True)
class StayCxr:
    """A stay's chest findings, shared by all its studies, and what its radiologists report.

    ``findings`` carries the devices of the ICU phase; ``read`` is the reported version: each finding
    is missed with probability ``report_omission`` and absent ones invented with probability
    ``report_false_positive``, decided once per stay (follow-up films are read against the prior report,
    so a finding left out of one report tends to stay out of the next).
    """

    findings: CxrFindings
    read: CxrFindings


def stay_cxr(pop: Population, s: int, opts: CxrOptions) -> StayCxr:
    """The chest findings of stay ``s`` (position in ``pop.stays``), from its own keyed stream."""
    rng = keyed_rng(opts.seed, "cxr-stay", int(pop.stays["stay_id"][s]))
    signal = opts.cxr_signal
    lab = {k: float(v[s]) for k, v in pop.labels.items()}
    sev: dict[str, float] = {}
    sides: dict[str, str] = {}
    for name, (intercept, weights) in FINDING_MODEL.items():
        drive = signal * sum(w * lab[k] for k, w in weights.items())
        present = rng.random() < _sigmoid(intercept + drive)
        # more severe where more of its causes are present
        value = float(np.clip(rng.uniform(0.25, 0.8) + 0.08 * drive, 0.05, 1.0))
        sev[name] = value if present else 0.0
        if name in SIDED:
            p_left, p_right = SIDED[name]
            u = rng.random()
            sides[name] = "left" if u < p_left else "right" if u < p_left + p_right else "bilateral"
    injury = signal * float(pop.stays["lung_injury"][s]) + DIFFUSE_NOISE * float(rng.normal())
    diffuse = float(np.clip((injury - DIFFUSE_THRESHOLD) / DIFFUSE_SPAN, 0.0, 1.0))
    p = int(pop.stays["patient_index"][s])
    bmi = pop.patients["weight_kg"][p] / (pop.patients["height_cm"][p] / 100.0) ** 2
    habitus = float(np.clip((bmi - HABITUS_BMI[0]) / (HABITUS_BMI[1] - HABITUS_BMI[0]), 0.0, 1.0))
    vent = bool(pop.stays["ventilated"][s])
    p_dev = {
        "ett": 0.92 if vent else 0.02,
        "ng_tube": min(0.95, (0.75 if vent else 0.08) + 0.45 * lab["stroke"] + 0.45 * lab["gi_bleed"]),
        "central_line": float(
            _sigmoid(-1.6 + 2.0 * lab["shock"] + 1.0 * lab["sepsis"] + 0.8 * lab["arf"] + 0.6 * vent)
        ),
        "pacemaker": 0.6 * lab["conduction"] + 0.12 * lab["dysrhythmia"] + 0.01,
        "sternal_wires": 0.4 * lab["cad"] * (0.5 + lab["complication"]) + 0.02,
    }
    blend = min(signal, 1.0)
    devices = tuple(d for d in DEVICES if rng.random() < DEVICE_BASE[d] + blend * (p_dev[d] - DEVICE_BASE[d]))
    findings = CxrFindings(
        opacity=sev["opacity"],
        opacity_side=sides["opacity"],
        effusion=sev["effusion"],
        effusion_side=sides["effusion"],
        edema=sev["edema"],
        cardiomegaly=sev["cardiomegaly"],
        atelectasis=sev["atelectasis"],
        pneumothorax=sev["pneumothorax"],
        pneumothorax_side=sides["pneumothorax"],
        diffuse=diffuse,
        hyperinflation=sev["hyperinflation"],
        habitus=habitus,
        devices=devices,
    )
    return StayCxr(findings, reported(findings, rng, opts.report_omission, opts.report_false_positive))


def study_findings(stay: StayCxr, phase: str, rng: np.random.Generator) -> tuple[CxrFindings, CxrFindings]:
    """(image findings, reported findings) of one study: the stay's findings with a little variation in
    severity; tubes and lines only in the ICU (an emergency-department or ward film keeps the permanent
    devices)."""
    scale = {name: float(rng.uniform(0.85, 1.15)) for name in SEVERITY_FIELDS}
    in_icu = phase in ("window", "icu_late")

    def vary(f: CxrFindings) -> CxrFindings:
        values = {n: float(np.clip(getattr(f, n) * scale[n], 0.05, 1.0)) if getattr(f, n) > 0 else 0.0
                  for n in SEVERITY_FIELDS}  # fmt: skip
        devices = f.devices if in_icu else tuple(d for d in f.devices if d in PERMANENT_DEVICES)
        return dataclasses.replace(f, devices=devices, **values)

    return vary(stay.findings), vary(stay.read)


def reported(
    findings: CxrFindings, rng: np.random.Generator, omission: float, false_pos: float
) -> CxrFindings:
    """The radiologist's reading: each finding missed with p=``omission``, invented with p=``false_pos``."""
    values = {}
    for name in SEVERITY_FIELDS:
        v = getattr(findings, name)
        if v > 0 and rng.random() < omission:
            v = 0.0
        elif v == 0 and rng.random() < false_pos:
            v = float(rng.uniform(0.2, 0.45))
        values[name] = v
    devices = tuple(d for d in findings.devices if rng.random() >= omission * DEVICE_OMISSION)
    return dataclasses.replace(findings, devices=devices, **values)


INDICATIONS = {
    "ett": ["s/p intubation, eval ETT placement", "intubated, assess tube position"],
    "central_line": ["new right IJ line, eval placement", "line placement"],
    "pneumonia": ["eval for pneumonia", "fever and cough, eval for infiltrate"],
    "chf": ["eval for pulmonary edema", "CHF exacerbation"],
    "resp_failure": ["hypoxia", "respiratory distress"],
    "sepsis": ["fever, eval for source of infection", "sepsis"],
}
GENERIC_INDICATIONS = ["eval for acute cardiopulmonary process", "shortness of breath", "chest pain", "eval"]


def _indication(findings: CxrFindings, labels: dict[str, bool], rng: np.random.Generator) -> str:
    reasons = [k for k in ("ett", "central_line") if k in findings.devices]
    reasons += [k for k in ("pneumonia", "chf", "resp_failure", "sepsis") if labels[k]]
    if not reasons or rng.random() < 0.3:
        return GENERIC_INDICATIONS[int(rng.integers(len(GENERIC_INDICATIONS)))]
    options = INDICATIONS[reasons[int(rng.integers(len(reasons)))]]
    return options[int(rng.integers(len(options)))]


@dataclass(frozen=True)
class ImageTask:
    path: str
    key: tuple[int, str]
    findings: CxrFindings
    view: str
    rows: int
    cols: int
    artifact: float


def _render_batch(root: str, seed: int, tasks: list[ImageTask]) -> int:
    """Worker: render and write a batch of images (each from its own keyed stream)."""
    from omnifuse.synth.cxr_image import encode_jpeg, render_cxr

    for task in tasks:
        rng = keyed_rng(seed, "cxr-image", *task.key)
        image = render_cxr(task.findings, task.view, task.rows, task.cols, rng, task.artifact)
        out = Path(root) / task.path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(encode_jpeg(image))
    return len(tasks)


def build_studies(
    pop: Population, opts: CxrOptions, reports_root: Path, stays: Sequence[StayCxr] | None = None
) -> tuple[pl.DataFrame, list[ImageTask]]:
    """Study metadata rows and image tasks for every scheduled study; writes the reports as it goes.
    ``stays``: every stay's :class:`StayCxr` (computed here when not given)."""
    from omnifuse.synth.cxr_report import write_report

    studies = schedule_studies(pop, opts)
    st, pat = pop.stays, pop.patients
    if stays is None:
        stays = [stay_cxr(pop, s, opts) for s in range(pop.n_stays)]
    meta: dict[str, list] = {
        k: []
        for k in (
            "dicom_id",
            "subject_id",
            "study_id",
            "view",
            "rows",
            "cols",
            "time",
            "artifact",
            "stay",
            "phase",
            "exam",
        )
    }
    tasks: list[ImageTask] = []
    seen_subjects: set[int] = set()
    for stay, study_id, t, phase in studies.iter_rows():
        rng = keyed_rng(opts.seed, "cxr-study", study_id)
        subject = int(st["subject_id"][stay])
        views = _views(rng, phase, bool(st["ventilated"][stay]))
        findings, read = study_findings(stays[stay], phase, rng)
        for k, view in enumerate(views):
            did = dicom_id(opts.seed, study_id, k)
            cols = opts.image_columns
            rows = round(cols * VIEW_ROWS_RATIO[view])
            degraded = rng.random() < opts.artifact_rate
            artifact = float(rng.uniform(0.55, 0.9) if degraded else rng.uniform(0.0, 0.15))
            path = cxr_image_path(subject, study_id, did)
            tasks.append(ImageTask(path, (study_id, did), findings, view, rows, cols, artifact))
            for key, value in (
                ("dicom_id", did),
                ("subject_id", subject),
                ("study_id", study_id),
                ("view", view),
                ("rows", rows),
                ("cols", cols),
                ("time", t),
                ("artifact", artifact),
                ("stay", stay),
                ("phase", phase),
                ("exam", EXAM[views]),
            ):
                meta[key].append(value)
        labels = {k: bool(v[stay]) for k, v in pop.labels.items()}
        p = int(st["patient_index"][stay])
        text = write_report(
            read,
            views=views,
            age=int(st["age"][stay]),
            gender=str(pat["gender"][p]),
            indication=_indication(findings, labels, rng),
            has_prior=subject in seen_subjects,
            rng=rng,
            no_findings_section_prob=opts.no_findings_section_prob,
            generic_devices=bool(set(findings.devices) - set(read.devices)) and subject in seen_subjects,
        )
        seen_subjects.add(subject)
        path = reports_root / cxr_report_path(subject, study_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return pl.DataFrame(meta), tasks


def _batches(tasks: list[ImageTask], size: int = 64) -> list[list[ImageTask]]:
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def submit_images(pool: Executor, root: Path, seed: int, tasks: list[ImageTask]) -> list[Future[int]]:
    """Queue every image on ``pool``; the bytes do not depend on which process renders what."""
    return [pool.submit(_render_batch, str(root), seed, batch) for batch in _batches(tasks)]


def wait_images(futures: list[Future[int]], total: int, progress: bool = False) -> None:
    with tqdm(total=total, desc="chest X-rays", unit="img", disable=not progress) as bar:
        for future in as_completed(futures):
            bar.update(future.result())


def render_images(root: Path, seed: int, tasks: list[ImageTask], progress: bool = False) -> None:
    """Render and write every image under ``root`` in this process."""
    with tqdm(total=len(tasks), desc="chest X-rays", unit="img", disable=not progress) as bar:
        for batch in _batches(tasks):
            bar.update(_render_batch(str(root), seed, batch))
