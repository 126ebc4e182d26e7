"""Synthetic lung-cancer subtyping cohort (CT + PET + Chinese clinical report) in real file formats.

The embedded demo for the paper's lung task (Wu et al., OmniFuse, Information Fusion 2025): predict one of
three invasiveness levels from a chest CT, a PET and a Chinese pre-operative report. Later stages read the
cohort with the same readers as real hospital data, through ``manifest.csv``.

Layout written by :func:`generate_lung` under ``DIR``::

    DIR/manifest.csv             patient_id,label,subtype,ct,pet,rep,roi_lps_mm (paths relative to DIR,
                                 empty = missing; roi_lps_mm = the nodule's box, see below)
    DIR/synth_info.json          generator, version, options, counts (no timestamps)
    DIR/synth_truth.csv          latent lesion/clinical parameters and what each report states, for tests
                                 and signal checks only (:func:`latent_views`); the pipeline never reads it
    DIR/patients/LUNG0001/ct.nii.gz      int16 Hounsfield units
    DIR/patients/LUNG0001/pet.nii.gz     float32 SUV (body weight, g/ml)
    DIR/patients/LUNG0001/report.txt     UTF-8 report, seven sections (see lung_report.py)
    DIR/patients/LUNG0001/ct_dicom/IM0001.dcm ...   with ``dicom=True``: one file per slice
    DIR/patients/LUNG0001/pet_dicom/IM0001.dcm ...

Labels: six pathological subtypes AAH, AIS (level L1: pre-invasive), MIA, IA1 (L2), IA2, IA3 (L3), where
IA1-3 are invasive adenocarcinoma of IASLC grade 1-3.

Geometry. Both volumes cover the same patient frame (DICOM patient coordinates, LPS, mm), each field of
view centred on the origin. Voxel (i, j, k) lies at x = x0 + i*sx toward the patient's left, y = y0 + j*sy
toward posterior, z = z0 + k*sz toward the head: the voxel order of an axial DICOM series (column, row,
slice), as dcm2niix writes it without reorientation. The NIfTI affine maps voxels to RAS (nibabel's
convention), so it is diag(-sx, -sy, sz) plus the origin (axis codes L, P, S); pixdim holds (sx, sy, sz);
qform and sform codes are 1 (scanner). DICOM: ImageOrientationPatient 1\\0\\0\\0\\1\\0, pixel (row j,
column i) of slice k = voxel (i, j, k); InstanceNumber 1 is the most superior slice (sort by
ImagePositionPatient, not by file name). CT is stored as uint16 with RescaleIntercept -1024, slope 1, so
rescaled values equal the NIfTI HU exactly. PET is stored as int16 with a per-slice RescaleSlope to SUV and
Units (0054,1001) = 'GML' (g/ml, i.e. SUV body weight already applied; no decay or dose correction is
needed, PatientWeight and the radiopharmaceutical dose are written for completeness only). PET/CT share
StudyInstanceUID and FrameOfReferenceUID; every UID is ``2.25.<integer of a version-5 UUID>`` named by the
config digest, patient, modality and slice, and dates are synthetic, derived from the seed. With
``manifest_images="dicom"`` the manifest's ``ct``/``pet`` columns name the series directories instead.

Phantom. An elliptic body (fat shell, soft tissue), ribs, two lungs (about -850 HU, denser posteriorly)
with small vessels, mediastinum, heart, descending aorta, trachea, liver below the right diaphragm and a
spine (vertebral bodies with discs, canal, posterior elements); anatomy varies per patient (sex-dependent
size, organ jitter). PET assigns SUVs per tissue (lung ~0.5, fat ~0.35, muscle ~0.9, blood pool ~1.7,
liver ~2.2, heart 1.8-6), is blurred by a Gaussian PSF (``pet_fwhm_mm``) and gets Poisson-like noise.
Small structures (vessels, lesion) are rendered with supersampled partial-volume occupancy.

Nodule box. ``roi_lps_mm`` is ``x0 y0 z0 x1 y1 z1``: the nodule's centre +- its largest lobulated
radius, in the patient frame above (LPS mm), as the manifest reader expects it (written when the patient
has a CT or a PET).

Signal model. Each subtype has a severity t = 0, 0.2, ..., 1 (AAH ... IA3). Three independent patient-level
latents, one per modality, mix it with the population centre and add noise::

    t_m = signal_m * t + (1 - signal_m) * 0.5 + N(0, sd_m * patient_noise),
    sd_m = ct_latent_sd / pet_latent_sd / rep_latent_sd (0.2 / 0.35 / 0.25)

- ``t_ct`` sets the lesion morphology the CT shows: solid fraction (consolidation-to-tumour ratio)
  ~ 1.25 t_ct - 0.2 (pure ground glass for AAH/AIS, part-solid for MIA/IA1, mostly solid for IA2/IA3),
  ground-glass attenuation (-720 to -540 HU), lobulated margin, a vacuole in larger solid cores, CT signs
  (named by the report), and the diameter ~ 4.5 mm * exp(1.65 t_ct) with a lognormal spread of
  ``size_noise`` (0.4: size alone is a weak cue). PET shows the size too (blurred).
- ``t_pet`` sets the lesion uptake: SUVmax ~ 0.7 + 6.5 t_pet^1.7 (lognormal noise). Small lesions read
  lower in the image (partial volume, ``pet_fwhm_mm`` 10), as in real PET; ``pet_noise`` 0.5.
- ``t_rep`` is the report's own view: the clinical cues (age, smoking, CEA, symptoms, growth on
  follow-up) and the physician's impression (the pre-operative diagnosis and the closing impression of
  the diagnostic basis: 0.15 t_ct + 0.85 t_rep + N(0, 0.08) in four grades; planned resection 0.3 t_ct +
  0.7 t_rep). The report also restates the CT reading and, in 40 % of reports, the SUVmax, with
  ``rep_noise`` (1.0: size, density, signs and SUVmax often misstated).

``*_signal = 0`` makes that latent uninformative; ``ct_noise_hu``, ``pet_noise`` and ``rep_noise`` add
measurement noise on top. Lesion position (lobe) is level-independent. Calibration with the defaults
(1,000 patients, seed 0, the cohort's 5 folds, macro one-vs-rest AUROC): a logistic regression on
:func:`latent_views` reaches 0.875 (CT), 0.852 (PET), 0.880 (report) and 0.919 (all three, on the
patients with every modality): upper bounds for encoders that must read the files. Through the demo's
lesion-centred crops, diagnostic sections, random encoders and trainer (docs/synthetic_data.md) the
unimodal models reach about 0.83 (CT), 0.78 (PET) and 0.80 (report).

What the demo can show: every modality alone predicts the level moderately and imperfectly, the three are
complementary (independent latent noise), so fusion beats each single modality, and missing modalities
(``p_ct``, ``p_pet``, ``p_rep``) exercise imputation. What it cannot show: real radiology (the phantom is
geometric, the text templated), evidence about the paper's AUROCs (the signal model is calibrated to
land near them), or anything about real subtype prevalence.

Determinism: every random draw comes from ``keyed_rng(seed, "lung", patient_id, part)``, so the same
config gives byte-identical files whatever ``workers`` is (on the same platform and library versions);
volumes are gzipped by :func:`omnifuse.formats.atomic.gzip_bytes` (mtime 0), never by nibabel. Speed:
about 60 ms of CPU per patient (CT 40 ms, PET 10 ms, report 1 ms, writing files); 1,000 patients take
about a minute of CPU, halved in wall time by ``workers=2``.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
import multiprocessing
import numbers
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
)

from omnifuse import __version__
from omnifuse.formats.atomic import atomic_dir, gzip_bytes
from omnifuse.synth.lung_report import (
    SIGNS,
    Clinical,
    NoduleReading,
    density_of,
    render_report,
    sample_clinical,
)
from omnifuse.synth.rng import keyed_rng

GENERATOR = "omnifuse.synth.lung"
SUBTYPES = ("AAH", "AIS", "MIA", "IA1", "IA2", "IA3")
LEVELS = ("L1", "L2", "L3")
LEVEL_OF = {"AAH": "L1", "AIS": "L1", "MIA": "L2", "IA1": "L2", "IA2": "L3", "IA3": "L3"}
SEVERITY = {name: i / 5 for i, name in enumerate(SUBTYPES)}
MODALITIES = ("ct", "pet", "rep")
MANIFEST_COLUMNS = ("patient_id", "label", "subtype", "ct", "pet", "rep", "roi_lps_mm")
LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")
LOBE_PROBS = (0.30, 0.10, 0.17, 0.27, 0.16)

_SIGN_PROB = {  # (base, slope in t_ct)
    "lobulation": (0.10, 0.60),
    "spiculation": (0.05, 0.55),
    "pleural": (0.05, 0.45),
    "vacuole": (0.15, 0.25),
    "bronchogram": (0.10, 0.35),
    "vascular": (0.15, 0.45),
}
_MIN_FOV_XY, _MIN_FOV_Z = 200.0, 150.0
# effective radius of a star-shaped object along each offset (dx, dy, dz, r), in mm
RadiusFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], "float | np.ndarray"]
_SUPERSAMPLE = 3
_GZIP_LEVEL = 1  # volumes are noise-dominated: level 6 is 4x slower for 3 % smaller files
CT_MIN_HU, CT_MAX_HU = -1024, 3071
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/omnifuse/synthetic-lung")


# ----------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LungSynthConfig:
    """Options of the synthetic lung cohort; every field is a plain value so a CLI can expose it."""

    n_patients: int = 1000  # patients (one sample each)
    seed: int = 0  # random seed: same options and seed give byte-identical files
    # probabilities of AAH, AIS, MIA, IA1, IA2, IA3 (normalised to sum 1)
    subtype_probs: tuple[float, ...] = (0.10, 0.17, 0.18, 0.20, 0.20, 0.15)
    p_ct: float = 1.0  # P(CT available); a patient always keeps at least one modality
    p_pet: float = 0.9  # P(PET available)
    p_rep: float = 0.95  # P(report available)
    ct_signal: float = 1.0  # share in [0, 1] of the subtype effect on the lesion (seen by CT, blurred by PET)
    pet_signal: float = 1.0  # share in [0, 1] of the subtype effect on the FDG uptake
    rep_signal: float = 1.0  # share in [0, 1] of the subtype effect on what the report states
    patient_noise: float = 1.0  # multiplier of the patient-level latent noise
    ct_latent_sd: float = 0.2  # sd of the CT latent (lesion morphology) around the subtype's severity
    pet_latent_sd: float = 0.35  # sd of the PET latent (FDG uptake)
    rep_latent_sd: float = 0.25  # sd of the report latent (clinical cues and the physician's impression)
    size_noise: float = 0.4  # lognormal sd of the nodule diameter around its trend in the CT latent
    ct_noise_hu: float = 20.0  # CT image noise (HU standard deviation)
    pet_noise: float = 0.5  # PET relative noise
    rep_noise: float = 1.0  # report noise in [0, 1] (misstated size, density, signs and SUVmax)
    ct_shape: tuple[int, int, int] = (96, 96, 48)  # CT voxels (x, y, z)
    ct_spacing: tuple[float, float, float] = (3.5, 3.5, 5.0)  # CT voxel size (mm)
    pet_shape: tuple[int, int, int] = (48, 48, 24)  # PET voxels (coarser than CT)
    pet_spacing: tuple[float, float, float] = (7.0, 7.0, 10.0)  # PET voxel size (mm)
    pet_fwhm_mm: float = 10.0  # PET point-spread function (Gaussian FWHM, mm)
    dicom: bool = False  # also write DICOM series (ct_dicom/, pet_dicom/)
    manifest_images: str = "nifti"  # what the manifest points to: "nifti" files or "dicom" folders

    def __post_init__(self) -> None:
        _check_int(self, "n_patients", 1)
        _check_int(self, "seed", 0)
        probs = _check_float_tuple(self, "subtype_probs", len(SUBTYPES), 0.0, math.inf)
        if sum(probs) <= 0:
            raise ValueError(f"subtype_probs must have a positive sum, got {probs}")
        for name in ("p_ct", "p_pet", "p_rep", "ct_signal", "pet_signal", "rep_signal", "rep_noise"):
            _check_float(self, name, 0.0, 1.0)
        if self.p_ct + self.p_pet + self.p_rep <= 0:
            raise ValueError(
                "p_ct, p_pet and p_rep cannot all be 0: every patient keeps at least one modality"
            )
        for name in (
            "patient_noise", "ct_latent_sd", "pet_latent_sd", "rep_latent_sd", "size_noise", "ct_noise_hu",
            "pet_noise",
            "pet_fwhm_mm",
        ):  # fmt: skip
            _check_float(self, name, 0.0, math.inf)
        for mod in ("ct", "pet"):
            shape = _check_int_tuple(self, f"{mod}_shape", 3, 4)
            spacing = _check_float_tuple(self, f"{mod}_spacing", 3, 1e-3, math.inf)
            fov = [n * s for n, s in zip(shape, spacing, strict=True)]
            if min(fov[:2]) < _MIN_FOV_XY or fov[2] < _MIN_FOV_Z:
                raise ValueError(
                    f"{mod}_shape x {mod}_spacing gives a field of view of {fov} mm; it must cover at least "
                    f"{_MIN_FOV_XY:g} x {_MIN_FOV_XY:g} x {_MIN_FOV_Z:g} mm to hold the chest"
                )
        if not isinstance(self.dicom, bool):
            raise ValueError(f"dicom must be a bool, got {self.dicom!r}")
        if self.manifest_images not in ("nifti", "dicom"):
            raise ValueError(f"manifest_images must be 'nifti' or 'dicom', got {self.manifest_images!r}")
        if self.manifest_images == "dicom" and not self.dicom:
            raise ValueError("manifest_images='dicom' needs dicom=True")

    @property
    def probabilities(self) -> np.ndarray:
        """Subtype probabilities, normalised."""
        p = np.asarray(self.subtype_probs, dtype=float)
        return p / p.sum()

    def digest(self) -> str:
        """A short stable hash of every option (used to derive DICOM UIDs)."""
        blob = json.dumps(asdict(self), sort_keys=True).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]


def _check_int(cfg: LungSynthConfig, name: str, low: int) -> int:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    object.__setattr__(cfg, name, int(value))
    return int(value)


def _check_float(cfg: LungSynthConfig, name: str, low: float, high: float) -> float:
    value = getattr(cfg, name)
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and low <= value <= high
    if not ok or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")
    object.__setattr__(cfg, name, float(value))
    return float(value)


def _check_float_tuple(
    cfg: LungSynthConfig, name: str, size: int, low: float, high: float
) -> tuple[float, ...]:
    value = getattr(cfg, name)
    items = tuple(value) if isinstance(value, (list, tuple)) else ()
    good = len(items) == size and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
        for v in items
    )
    if not good:
        raise ValueError(f"{name} must be {size} finite numbers in [{low:g}, {high:g}], got {value!r}")
    out = tuple(float(v) for v in items)
    object.__setattr__(cfg, name, out)
    return out


def _check_int_tuple(cfg: LungSynthConfig, name: str, size: int, low: int) -> tuple[int, ...]:
    value = getattr(cfg, name)
    items = tuple(value) if isinstance(value, (list, tuple)) else ()
    good = len(items) == size and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low for v in items
    )
    if not good:
        raise ValueError(f"{name} must be {size} integers >= {low}, got {value!r}")
    out = tuple(int(v) for v in items)
    object.__setattr__(cfg, name, out)
    return out


# ----------------------------------------------------------------------------------------------------------
# Per-patient sampling (every draw comes from a stream keyed by seed and patient id)
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anatomy:
    """Per-patient phantom geometry in patient LPS millimetres."""

    body: tuple[float, float]  # semi-axes (lateral, antero-posterior)
    fat: float  # subcutaneous fat thickness
    lung_x: float  # |x| of each lung centre
    lung_y: float
    lung_z: float
    lung_axes: tuple[float, float, float, float]  # lateral, AP, up, down
    heart: tuple[float, float, float, float, float, float]  # centre xyz, semi-axes xyz
    mediastinum: tuple[float, float, float, float]  # centre y, semi-axes x, y; lower z
    carina_z: float
    aorta: tuple[float, float, float]  # x, y, radius
    spine_y: float
    liver: tuple[float, float, float, float, float, float]
    rib_phase: float
    rib_period: float
    disc_phase: float
    vessels: tuple[tuple[float, float, float, float], ...]  # x, y, z, radius


@dataclass(frozen=True)
class Lesion:
    """The patient's nodule."""

    lobe: str
    centre: tuple[float, float, float]  # LPS mm
    diameter_mm: float
    solid_fraction: float
    ggo_hu: float
    solid_hu: float
    lobulation: float
    phases: tuple[float, float]
    core_offset: tuple[float, float, float]  # mm
    signs: tuple[str, ...]
    suvmax: float


@dataclass(frozen=True)
class Patient:
    index: int
    patient_id: str
    subtype: str
    sex: str
    t_ct: float
    t_pet: float
    t_rep: float
    has: dict[str, bool]
    anatomy: Anatomy
    lesion: Lesion
    clinical: Clinical

    @property
    def label(self) -> str:
        return LEVEL_OF[self.subtype]


def patient_id(index: int, n_patients: int) -> str:
    """``LUNG0001`` style ids (wider when the cohort has more than 9999 patients)."""
    return f"LUNG{index + 1:0{max(4, len(str(n_patients)))}d}"


def _latent(signal: float, t: float, sd: float, rng: np.random.Generator) -> float:
    return float(signal * t + (1.0 - signal) * 0.5 + rng.normal(0.0, sd))


def sample_patient(cfg: LungSynthConfig, index: int) -> Patient:
    """Everything about one patient except the rendered files (depends only on cfg and index)."""
    pid = patient_id(index, cfg.n_patients)
    rng = keyed_rng(cfg.seed, "lung", pid, "latent")
    subtype = SUBTYPES[int(rng.choice(len(SUBTYPES), p=cfg.probabilities))]
    sex = "F" if rng.random() < 0.55 else "M"
    t = SEVERITY[subtype]
    pn = cfg.patient_noise
    t_ct = _latent(cfg.ct_signal, t, cfg.ct_latent_sd * pn, rng)
    t_pet = _latent(cfg.pet_signal, t, cfg.pet_latent_sd * pn, rng)
    t_rep = _latent(cfg.rep_signal, t, cfg.rep_latent_sd * pn, rng)
    anatomy = _sample_anatomy(keyed_rng(cfg.seed, "lung", pid, "anatomy"), sex)
    lesion = _sample_lesion(cfg, pid, anatomy, t_ct, t_pet)
    clinical = sample_clinical(keyed_rng(cfg.seed, "lung", pid, "clinical"), sex, t_rep)
    has = _sample_availability(keyed_rng(cfg.seed, "lung", pid, "availability"), cfg)
    return Patient(index, pid, subtype, sex, t_ct, t_pet, t_rep, has, anatomy, lesion, clinical)


def _sample_availability(rng: np.random.Generator, cfg: LungSynthConfig) -> dict[str, bool]:
    p = np.array([cfg.p_ct, cfg.p_pet, cfg.p_rep])
    has = rng.random(3) < p
    if not has.any():
        has[int(rng.choice(3, p=p / p.sum()))] = True
    return {m: bool(h) for m, h in zip(MODALITIES, has, strict=True)}


def _sample_anatomy(rng: np.random.Generator, sex: str) -> Anatomy:
    male = sex == "M"
    ax = float(np.clip(rng.normal(150 if male else 138, 8), 120, 162))
    ay = float(np.clip(rng.normal(108 if male else 98, 6), 82, 120))
    fat = float(rng.uniform(8, 18) + (0 if male else 4))
    jitter = rng.uniform(0.94, 1.06, size=8)
    lung_axes = (0.34 * ax * jitter[0], 0.72 * ay * jitter[1], 105 * jitter[2], 85 * jitter[3])
    heart = (18 * jitter[4], -0.25 * ay, -45 * jitter[5], 0.32 * ax, 0.42 * ay, 50 * jitter[6])
    anat = Anatomy(
        body=(ax, ay),
        fat=fat,
        lung_x=0.5 * ax,
        lung_y=5.0,
        lung_z=5.0 * jitter[7],
        lung_axes=lung_axes,
        heart=heart,
        mediastinum=(-0.1 * ay, 26.0, 0.5 * ay, heart[2] + 20),
        carina_z=float(rng.uniform(25, 45)),
        aorta=(22.0, 0.45 * ay, float(rng.uniform(10, 13))),
        spine_y=0.62 * ay,
        liver=(-40.0, 0.0, -100.0, 0.75 * ax, 0.75 * ay, 60.0),
        rib_phase=float(rng.uniform(0, 28)),
        rib_period=float(rng.uniform(26, 31)),
        disc_phase=float(rng.uniform(0, 27)),
        vessels=(),
    )
    vessels = tuple(
        (
            *_lung_point(rng, anat, right=bool(rng.random() < 0.5), w_range=(-0.8, 0.8)),
            float(rng.uniform(1.5, 3.0)),
        )
        for _ in range(int(rng.integers(14, 26)))
    )
    return replace(anat, vessels=vessels)


def _lung_point(
    rng: np.random.Generator,
    anat: Anatomy,
    right: bool,
    w_range: tuple[float, float],
    v_range: tuple[float, float] = (-0.8, 0.8),
    max_norm: float = 0.8,
) -> tuple[float, float, float]:
    """A random point inside one lung, in normalised lung coordinates restricted to the given ranges."""
    lx, ly, lz_up, lz_dn = anat.lung_axes
    for _ in range(200):
        u, v, w = rng.uniform(-0.8, 0.8), rng.uniform(*v_range), rng.uniform(*w_range)
        if u * u + v * v + w * w <= max_norm**2:
            break
    cx = -anat.lung_x if right else anat.lung_x
    z = anat.lung_z + w * (lz_up if w > 0 else lz_dn)
    return (float(cx + u * lx), float(anat.lung_y + v * ly), float(z))


_LOBE_REGION = {  # lobe: (right lung?, w range, v range) in normalised lung coordinates
    "RUL": (True, (0.05, 0.75), (-0.8, 0.8)),
    "RML": (True, (-0.45, 0.05), (-0.8, -0.1)),
    "RLL": (True, (-0.75, 0.0), (0.0, 0.8)),
    "LUL": (False, (-0.3, 0.75), (-0.8, 0.3)),
    "LLL": (False, (-0.75, -0.05), (0.0, 0.8)),
}


def _sample_lesion(cfg: LungSynthConfig, pid: str, anat: Anatomy, t_ct: float, t_pet: float) -> Lesion:
    rng = keyed_rng(cfg.seed, "lung", pid, "lesion")
    position_rng = keyed_rng(cfg.seed, "lung", pid, "lesion_position")
    pn = cfg.patient_noise
    diameter = float(
        np.clip(4.5 * math.exp(1.65 * t_ct) * math.exp(rng.normal(0, cfg.size_noise * pn)), 3.0, 40.0)
    )
    solid = float(np.clip(1.25 * t_ct - 0.2 + rng.normal(0, 0.08 * pn), 0.0, 1.0))
    solid = 0.0 if solid < 0.05 else solid
    t_c = float(np.clip(t_ct, 0.0, 1.0))
    signs = tuple(s for s in SIGNS if rng.random() < _SIGN_PROB[s][0] + _SIGN_PROB[s][1] * t_c)
    lobe = LOBES[int(rng.choice(len(LOBES), p=LOBE_PROBS))]
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-12
    offset = (1.0 - solid) * diameter / 4 * direction
    suv = (0.7 + 6.5 * float(np.clip(t_pet, 0.0, 1.2)) ** 1.7) * math.exp(rng.normal(0, 0.15 * pn))
    ggo_hu = float(np.clip(-720 + 180 * t_ct + rng.normal(0, 35 * pn), -800, -350))
    solid_hu = float(rng.normal(35, 10))
    phases = (float(rng.uniform(0, 2 * math.pi)), float(rng.uniform(0, 2 * math.pi)))
    # position from its own stream, so the lesion itself does not depend on the fields of view
    centre = _lesion_centre(position_rng, cfg, anat, lobe, diameter / 2)
    return Lesion(
        lobe=lobe,
        centre=centre,
        diameter_mm=diameter,
        solid_fraction=solid,
        ggo_hu=ggo_hu,
        solid_hu=solid_hu,
        lobulation=0.04 + 0.10 * t_c + (0.08 if "lobulation" in signs else 0.0),
        phases=phases,
        core_offset=(float(offset[0]), float(offset[1]), float(offset[2])),
        signs=signs,
        suvmax=float(suv),
    )


def _lesion_centre(
    rng: np.random.Generator, cfg: LungSynthConfig, anat: Anatomy, lobe: str, radius: float
) -> tuple[float, float, float]:
    """A point of the lobe away from the heart and inside both fields of view (deterministic fallback)."""
    right, w_range, v_range = _LOBE_REGION[lobe]
    hx, hy, hz, hax, hay, haz = anat.heart
    half_fov = (
        np.minimum(np.multiply(cfg.ct_shape, cfg.ct_spacing), np.multiply(cfg.pet_shape, cfg.pet_spacing)) / 2
    )
    limit = half_fov - radius - 5.0
    point = _lung_point(rng, anat, right, (-0.2, 0.2), (-0.2, 0.2), 0.3)
    for _ in range(100):
        cand = _lung_point(rng, anat, right, w_range, v_range, 0.75)
        in_heart = ((cand[0] - hx) / hax) ** 2 + ((cand[1] - hy) / hay) ** 2 + (
            (cand[2] - hz) / haz
        ) ** 2 < 1.3
        if not in_heart and all(abs(c) <= lim for c, lim in zip(cand, limit, strict=True)):
            point = cand
            break
    return point


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A voxel grid centred on the patient-frame origin; voxel (i, j, k) in LPS order."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def origin(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        n, s = np.asarray(self.shape, float), np.asarray(self.spacing, float)
        return -n * s / 2 + s / 2

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = self.origin
        x, y, z = (o[a] + np.arange(self.shape[a]) * self.spacing[a] for a in range(3))
        return x, y, z

    def affine_ras(self) -> np.ndarray:
        """NIfTI (RAS) affine of the LPS-ordered voxel grid."""
        sx, sy, sz = self.spacing
        x0, y0, z0 = self.origin
        return np.array([[-sx, 0, 0, -x0], [0, -sy, 0, -y0], [0, 0, sz, z0], [0, 0, 0, 1]], dtype=float)


def _ellipse2d(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return (((x - cx) / ax) ** 2)[:, None, None] + (((y - cy) / ay) ** 2)[None, :, None] <= 1.0


def _zband(z: np.ndarray, phase: float, period: float, duty: float) -> np.ndarray:
    return (np.cos(2 * np.pi * (z - phase) / period) > math.cos(math.pi * duty))[None, None, :]


def _tissue_masks(grid: Grid, a: Anatomy) -> Iterator[tuple[str, np.ndarray]]:
    """(tissue, mask) pairs in painting order; masks broadcast to the grid shape."""
    x, y, z = grid.axes()
    ax, ay = a.body
    inner = _ellipse2d(x, y, 0, 0, ax - a.fat, ay - a.fat)
    yield "fat", _ellipse2d(x, y, 0, 0, ax, ay)
    yield "soft", inner
    cx, cy, cz, sx, sy, sz = a.liver
    liver = (((x - cx) / sx) ** 2)[:, None, None] + (((y - cy) / sy) ** 2)[None, :, None]
    yield "liver", (liver + (((z - cz) / sz) ** 2)[None, None, :] <= 1.0) & inner
    yield "rib", _ribs(x, y, z, a, inner)
    yield "lung", _lungs(x, y, z, a) & inner
    my, mx, may, mz = a.mediastinum
    yield "mediastinum", _ellipse2d(x, y, 0, my, mx, may) & (z > mz)[None, None, :]
    hx, hy, hz, hax, hay, haz = a.heart
    heart = (((x - hx) / hax) ** 2)[:, None, None] + (((y - hy) / hay) ** 2)[None, :, None]
    yield "heart", heart + (((z - hz) / haz) ** 2)[None, None, :] <= 1.0
    yield "aorta", _ellipse2d(x, y, a.aorta[0], a.aorta[1], a.aorta[2], a.aorta[2])
    yield "trachea", _ellipse2d(x, y, 0, my + 8, 9, 8) & (z > a.carina_z)[None, None, :]
    yield "vertebra", _ellipse2d(x, y, 0, a.spine_y, 17, 15)
    yield "disc", _ellipse2d(x, y, 0, a.spine_y, 17, 15) & _zband(z, a.disc_phase, 27.0, 0.2)
    yield "posterior", _ellipse2d(x, y, 0, a.spine_y + 27, 12, 12)
    yield "canal", _ellipse2d(x, y, 0, a.spine_y + 23, 7, 7)


def _ribs(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: Anatomy, inner: np.ndarray) -> np.ndarray:
    """Oblique ribs: an 8 mm shell inside the body wall, in bands that descend 35 mm from back to front."""
    ax, ay = a.body
    shell = inner & ~_ellipse2d(x, y, 0, 0, ax - a.fat - 8, ay - a.fat - 8)
    front = 0.5 - 0.5 * np.clip(y / (ay - a.fat), -1, 1)  # 0 at the back, 1 at the front
    drop = 35.0 * front[None, :, None]
    phase = 2 * np.pi * (z[None, None, :] + drop - a.rib_phase) / a.rib_period
    bands = (np.cos(phase) > math.cos(math.pi * 0.3)) & (z > a.lung_z - a.lung_axes[3] - 15)[None, None, :]
    return shell & bands


def _lungs(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: Anatomy) -> np.ndarray:
    lx, ly, lz_up, lz_dn = a.lung_axes
    dz = z - a.lung_z
    zterm = (dz / np.where(dz > 0, lz_up, lz_dn)) ** 2
    yterm = ((y - a.lung_y) / ly) ** 2
    right = (((x + a.lung_x) / (lx * 1.04)) ** 2)[:, None, None] + yterm[None, :, None] + zterm[None, None, :]
    left = (((x - a.lung_x) / lx) ** 2)[:, None, None] + yterm[None, :, None] + zterm[None, None, :]
    return (right <= 1.0) | (left <= 1.0)


def _paint_anatomy(
    grid: Grid, anat: Anatomy, values: dict[str, float | np.ndarray], background: float
) -> np.ndarray:
    vol = np.full(grid.shape, background, dtype=np.float32)
    for tissue, mask in _tissue_masks(grid, anat):
        vol = np.where(
            mask, np.float32(values[tissue]) if np.isscalar(values[tissue]) else values[tissue], vol
        )
    return vol.astype(np.float32, copy=False)


def _occupancy(
    grid: Grid, centre: tuple[float, float, float], reach: float, radius_of: RadiusFn
) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Partial-volume fraction of a star-shaped object in the voxels around ``centre`` (supersampled)."""
    o, sp, n = grid.origin, np.asarray(grid.spacing), np.asarray(grid.shape)
    lo = np.maximum(np.floor((np.asarray(centre) - reach - o) / sp).astype(int) - 1, 0)
    hi = np.minimum(np.ceil((np.asarray(centre) + reach - o) / sp).astype(int) + 2, n)
    if np.any(hi <= lo):
        return None
    sub = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5
    d = [
        ((o[a] + np.arange(lo[a], hi[a]) * sp[a])[:, None] + sub[None, :] * sp[a]).ravel() - centre[a]
        for a in range(3)
    ]
    dx, dy, dz = d[0][:, None, None], d[1][None, :, None], d[2][None, None, :]
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    inside = (r <= radius_of(dx, dy, dz, r)).astype(np.float32)
    m = hi - lo
    frac = inside.reshape(m[0], _SUPERSAMPLE, m[1], _SUPERSAMPLE, m[2], _SUPERSAMPLE).mean(axis=(1, 3, 5))
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2])), frac


def _blend(vol: np.ndarray, occ: tuple[tuple[slice, slice, slice], np.ndarray] | None, value: float) -> None:
    if occ is not None:
        sl, frac = occ
        vol[sl] = vol[sl] * (1 - frac) + np.float32(value) * frac


def _sphere(radius: float) -> RadiusFn:
    return lambda dx, dy, dz, r: radius


def _lobulated(lesion: Lesion) -> RadiusFn:
    radius, amp = lesion.diameter_mm / 2, lesion.lobulation
    p1, p2 = lesion.phases

    def radius_of(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, r: np.ndarray) -> np.ndarray:
        theta = np.arctan2(dy, dx)
        cos_phi = dz / np.maximum(r, 1e-6)
        sin_phi = np.sqrt(np.clip(1 - cos_phi * cos_phi, 0, 1))
        g = 0.5 * np.cos(3 * theta + p1) * sin_phi + 0.5 * np.cos(2 * np.arccos(np.clip(cos_phi, -1, 1)) + p2)
        return radius * (1 + amp * g)

    return radius_of


def _paint_lesion(vol: np.ndarray, grid: Grid, lesion: Lesion, outer: float, core: float | None) -> None:
    radius = lesion.diameter_mm / 2
    reach = radius * (1 + lesion.lobulation) + 1.0
    _blend(vol, _occupancy(grid, lesion.centre, reach, _lobulated(lesion)), outer)
    if core is not None and lesion.solid_fraction > 0:
        centre = tuple(c + o for c, o in zip(lesion.centre, lesion.core_offset, strict=True))
        core_r = lesion.solid_fraction * radius
        _blend(vol, _occupancy(grid, centre, core_r + 1.0, _sphere(core_r)), core)
        if "vacuole" in lesion.signs and radius > 4:
            _blend(vol, _occupancy(grid, centre, 3.0, _sphere(min(2.0, 0.3 * radius))), -900.0)


def render_ct(cfg: LungSynthConfig, patient: Patient) -> np.ndarray:
    """CT volume in HU (int16), voxel order (i, j, k) = LPS."""
    rng = keyed_rng(cfg.seed, "lung", patient.patient_id, "ct")
    grid = Grid(cfg.ct_shape, cfg.ct_spacing)
    a = patient.anatomy
    _, y, _ = grid.axes()
    lung = rng.normal(-850, 20) + 50 * np.clip((y - a.lung_y) / a.lung_axes[1], -1, 1)
    values = {
        "fat": rng.normal(-100, 8),
        "soft": rng.normal(40, 5),
        "liver": rng.normal(58, 5),
        "rib": rng.normal(550, 60),
        "lung": lung.astype(np.float32)[None, :, None],
        "mediastinum": rng.normal(-20, 15),
        "heart": rng.normal(42, 5),
        "aorta": rng.normal(45, 5),
        "trachea": -990.0,
        "vertebra": rng.normal(330, 40),
        "disc": rng.normal(85, 10),
        "posterior": rng.normal(500, 60),
        "canal": rng.normal(20, 5),
    }
    vol = _paint_anatomy(grid, a, values, background=-1000.0)
    for vx, vy, vz, vr in a.vessels:
        _blend(vol, _occupancy(grid, (vx, vy, vz), vr + 1.0, _sphere(vr)), float(rng.uniform(20, 50)))
    lesion = patient.lesion
    _paint_lesion(vol, grid, lesion, lesion.ggo_hu, lesion.solid_hu)
    vol += rng.standard_normal(grid.shape, dtype=np.float32) * np.float32(cfg.ct_noise_hu)
    vol = np.where(_outside_scan_circle(grid), np.float32(CT_MIN_HU), vol)
    return np.clip(np.rint(vol), CT_MIN_HU, CT_MAX_HU).astype(np.int16)


def _outside_scan_circle(grid: Grid) -> np.ndarray:
    """Voxels outside the reconstruction circle inscribed in the axial field of view (scanner padding)."""
    x, y, _ = grid.axes()
    radius = min(grid.shape[0] * grid.spacing[0], grid.shape[1] * grid.spacing[1]) / 2
    return (x**2)[:, None, None] + (y**2)[None, :, None] > radius**2


def render_pet(cfg: LungSynthConfig, patient: Patient) -> np.ndarray:
    """PET volume in SUV (float32), voxel order (i, j, k) = LPS."""
    rng = keyed_rng(cfg.seed, "lung", patient.patient_id, "pet")
    grid = Grid(cfg.pet_shape, cfg.pet_spacing)
    blood = rng.normal(1.7, 0.2)
    values = {
        "fat": rng.normal(0.35, 0.05),
        "soft": rng.normal(0.9, 0.1),
        "liver": rng.normal(2.2, 0.3),
        "rib": 0.8,
        "lung": rng.normal(0.5, 0.06),
        "mediastinum": blood,
        "heart": rng.uniform(1.8, 6.0),
        "aorta": blood,
        "trachea": 0.0,
        "vertebra": rng.normal(1.8, 0.2),
        "disc": 0.9,
        "posterior": 1.2,
        "canal": 0.9,
    }
    vol = _paint_anatomy(grid, patient.anatomy, values, background=0.0)
    _paint_lesion(vol, grid, patient.lesion, patient.lesion.suvmax, None)
    vol = _gaussian_blur(vol, cfg.pet_fwhm_mm / (2 * math.sqrt(2 * math.log(2))), grid.spacing)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    vol = vol + np.float32(cfg.pet_noise) * np.sqrt(np.maximum(vol, 0) + np.float32(0.05)) * noise
    return np.maximum(vol, 0).astype(np.float32)


def _gaussian_blur(vol: np.ndarray, sigma_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur (edge-replicated), numpy only."""
    for axis, sp in enumerate(spacing):
        sigma = sigma_mm / sp
        if sigma < 0.05:
            continue
        half = max(1, math.ceil(3 * sigma))
        k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
        k = (k / k.sum()).astype(np.float32)
        pad = [(0, 0)] * 3
        pad[axis] = (half, half)
        padded = np.pad(vol, pad, mode="edge")
        n = vol.shape[axis]
        out = np.zeros_like(vol)
        for i, w in enumerate(k):
            out += w * np.take(padded, np.arange(i, i + n), axis=axis)
        vol = out
    return vol


# ----------------------------------------------------------------------------------------------------------
# File formats
# ----------------------------------------------------------------------------------------------------------


def nifti_bytes(vol: np.ndarray, grid: Grid, description: str) -> bytes:
    """A deterministic ``.nii.gz`` (gzip mtime 0) with spacing in pixdim and the affine in q/sform."""
    affine = grid.affine_ras()
    img = nib.Nifti1Image(vol, affine)
    header = img.header
    header.set_data_dtype(vol.dtype)
    header.set_xyzt_units("mm", "sec")
    header.set_zooms(grid.spacing)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    header["descrip"] = description.encode("ascii")[:79]
    return gzip_bytes(img.to_bytes(), level=_GZIP_LEVEL)


def _uid(digest: str, *parts: object) -> str:
    """A deterministic DICOM UID: ``2.25.`` + a name-based (version 5) UUID as an integer (ISO/IEC 9834-8).

    (pydicom's ``generate_uid(prefix=None)`` ignores its entropy sources and returns a random UUID.)
    """
    name = "|".join(["omnifuse-lung", digest, *map(str, parts)])
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


def _ds(value: float) -> str:
    """A DICOM decimal string: as many significant digits as fit in 16 characters."""
    for digits in range(12, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot format {value!r} as a DICOM DS")


def dicom_series(
    cfg: LungSynthConfig, patient: Patient, modality: str, vol: np.ndarray
) -> list[tuple[str, bytes]]:
    """One DICOM file per axial slice: [(file name, bytes)], InstanceNumber 1 = most superior slice."""
    is_ct = modality == "ct"
    grid = Grid(cfg.ct_shape, cfg.ct_spacing) if is_ct else Grid(cfg.pet_shape, cfg.pet_spacing)
    ds = _series_template(cfg, patient, modality, grid)
    digest, nz = cfg.digest(), grid.shape[2]
    x0, y0, z0 = grid.origin
    out = []
    for k in range(nz - 1, -1, -1):
        instance = nz - k
        sop_uid = _uid(digest, patient.patient_id, modality, "sop", k)
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = instance
        z = z0 + k * grid.spacing[2]
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        plane = np.ascontiguousarray(vol[:, :, k].T)
        if is_ct:
            ds.PixelData = (plane.astype(np.int32) - CT_MIN_HU).astype("<u2").tobytes()
        else:
            _pet_pixels(ds, plane, instance)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append((f"IM{instance:04d}.dcm", buf.getvalue()))
    return out


def _series_template(cfg: LungSynthConfig, patient: Patient, modality: str, grid: Grid) -> Dataset:
    """Every attribute shared by the slices of one series (per-slice ones are set by the caller)."""
    is_ct = modality == "ct"
    digest, pid = cfg.digest(), patient.patient_id
    rng = keyed_rng(cfg.seed, "lung", pid, "dicom")
    study_date = (dt.date(2016, 1, 1) + dt.timedelta(days=int(rng.integers(0, 8 * 365)))).strftime("%Y%m%d")
    weight = int(rng.integers(50, 86)) if patient.sex == "M" else int(rng.integers(42, 76))
    sop_class = CTImageStorage if is_ct else PositronEmissionTomographyImageStorage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_class  # replaced per slice
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("omnifuse", "implementation")
    meta.ImplementationVersionName = f"OMNIFUSE_{__version__}"[:16]
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = "090000" if is_ct else "100000"
    ds.Modality = "CT" if is_ct else "PT"
    ds.Manufacturer = "OmniFuse synthetic phantom"
    ds.StudyDescription = "PET-CT chest (synthetic)"
    ds.SeriesDescription = "CT chest (HU)" if is_ct else "PET FDG (SUVbw)"
    ds.PatientName = pid
    ds.PatientID = pid
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{patient.clinical.age:03d}Y"
    ds.PatientWeight = str(weight)
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.SliceThickness = _ds(grid.spacing[2])
    ds.SpacingBetweenSlices = _ds(grid.spacing[2])
    ds.StudyInstanceUID = _uid(digest, pid, "study")
    ds.SeriesInstanceUID = _uid(digest, pid, modality, "series")
    ds.FrameOfReferenceUID = _uid(digest, pid, "frame")
    ds.StudyID = "1"
    ds.SeriesNumber = 2 if is_ct else 3
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[0]
    ds.PixelSpacing = [_ds(grid.spacing[1]), _ds(grid.spacing[0])]
    ds.BitsAllocated = 16
    if is_ct:
        _ct_attributes(ds)
    else:
        _pet_attributes(ds, grid.shape[2], weight)
    return ds


def _ct_attributes(ds: Dataset) -> None:
    """CT pixels: uint16, 12 bits stored, HU = stored - 1024."""
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = str(CT_MIN_HU), "1", "HU"
    ds.WindowCenter, ds.WindowWidth = ["-600", "40"], ["1500", "400"]
    ds.KVP = "120"


def _pet_attributes(ds: Dataset, nz: int, weight: int) -> None:
    """PET pixels: int16 with a per-slice RescaleSlope to SUVbw; Units GML (g/ml)."""
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 1
    ds.RescaleIntercept = "0"
    ds.Units = "GML"
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.CorrectedImage = ["ATTN", "DECY"]
    ds.DecayCorrection = "START"
    ds.NumberOfSlices = nz
    drug = Dataset()
    drug.Radiopharmaceutical = "Fluorodeoxyglucose"
    drug.RadiopharmaceuticalStartTime = "090000"
    drug.RadionuclideTotalDose = _ds(3.7e6 * weight)
    drug.RadionuclideHalfLife = "6586.2"
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])


def _pet_pixels(ds: Dataset, plane: np.ndarray, instance: int) -> None:
    peak = float(plane.max())
    slope = float(_ds(peak / 32000)) if peak > 0 else 1.0  # margin: the rounded slope never clips the peak
    ds.RescaleSlope = _ds(slope)
    ds.ImageIndex = instance
    ds.PixelData = np.clip(np.rint(plane / slope), 0, 32767).astype("<i2").tobytes()


# ----------------------------------------------------------------------------------------------------------
# Cohort
# ----------------------------------------------------------------------------------------------------------


def _patient_dir(pid: str) -> str:
    return f"patients/{pid}"


def _write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_patient(cfg: LungSynthConfig, root: str | os.PathLike[str], index: int) -> dict[str, object]:
    """Render and write one patient under ``root``; return its manifest and truth row."""
    root = Path(root)
    p = sample_patient(cfg, index)
    base = _patient_dir(p.patient_id)
    paths = {m: "" for m in MODALITIES}
    for modality, render, grid, desc in (
        ("ct", render_ct, Grid(cfg.ct_shape, cfg.ct_spacing), "OmniFuse synthetic CT (HU)"),
        ("pet", render_pet, Grid(cfg.pet_shape, cfg.pet_spacing), "OmniFuse synthetic PET (SUVbw g/ml)"),
    ):
        if not p.has[modality]:
            continue
        vol = render(cfg, p)
        _write(root, f"{base}/{modality}.nii.gz", nifti_bytes(vol, grid, desc))
        paths[modality] = f"{base}/{modality}.nii.gz"
        if cfg.dicom:
            for name, data in dicom_series(cfg, p, modality, vol):
                _write(root, f"{base}/{modality}_dicom/{name}", data)
            if cfg.manifest_images == "dicom":
                paths[modality] = f"{base}/{modality}_dicom"
    facts: dict[str, object] | None = None
    if p.has["rep"]:
        facts = {}
        text = _report(cfg, p, facts)
        _write(root, f"{base}/report.txt", text.encode("utf-8"))
        paths["rep"] = f"{base}/report.txt"
    roi = lesion_box(p.lesion) if p.has["ct"] or p.has["pet"] else ()
    return {
        "manifest": {
            "patient_id": p.patient_id,
            "label": p.label,
            "subtype": p.subtype,
            **paths,
            "roi_lps_mm": " ".join(f"{v:.1f}" for v in roi),
        },
        "truth": _truth(p, facts),
    }


def lesion_box(lesion: Lesion) -> tuple[float, ...]:
    """The nodule's bounding box ``(x0, y0, z0, x1, y1, z1)`` in patient LPS millimetres (the frame of
    both volumes): its centre +- its largest lobulated radius."""
    reach = lesion.diameter_mm / 2 * (1 + lesion.lobulation)
    lo = tuple(c - reach for c in lesion.centre)
    hi = tuple(c + reach for c in lesion.centre)
    return (*lo, *hi)


def _report(cfg: LungSynthConfig, p: Patient, facts: dict[str, object]) -> str:
    les = p.lesion
    reading = NoduleReading(les.lobe, les.diameter_mm, les.solid_fraction, les.ggo_hu, les.signs, les.suvmax)
    rng = keyed_rng(cfg.seed, "lung", p.patient_id, "rep")
    pet_done = bool(rng.random() < 0.4)
    return render_report(
        rng, p.clinical, reading, t_morph=p.t_ct, t_rep=p.t_rep, rep_noise=cfg.rep_noise, pet_done=pet_done,
        facts=facts,
    )  # fmt: skip


def _stated(facts: dict[str, object] | None) -> dict[str, object]:
    """The ``rep_*`` truth columns: what the report states (empty without a report)."""
    if facts is None:
        keys = ("size_mm", "density", "solid_mm", "signs", "suvmax", "impression", "plan")
        return {f"rep_{k}": "" for k in keys}
    density = str(facts["density"])
    solid = {"ggo": 0, "part_solid": facts.get("solid_mm", 0), "solid": facts["size_mm"]}[density]
    return {
        "rep_size_mm": facts["size_mm"],
        "rep_density": density,
        "rep_solid_mm": solid,
        "rep_signs": "|".join(facts["signs"]),  # type: ignore[arg-type]
        "rep_suvmax": f"{facts['suvmax']:.1f}" if "suvmax" in facts else "",
        "rep_impression": facts["impression"],
        "rep_plan": facts["plan"],
    }


def _truth(p: Patient, facts: dict[str, object] | None = None) -> dict[str, object]:
    les, c = p.lesion, p.clinical
    ras = (-les.centre[0], -les.centre[1], les.centre[2])
    return {
        "patient_id": p.patient_id,
        "subtype": p.subtype,
        "label": p.label,
        "sex": p.sex,
        "age": c.age,
        "t_ct": f"{p.t_ct:.4f}",
        "t_pet": f"{p.t_pet:.4f}",
        "t_rep": f"{p.t_rep:.4f}",
        "lobe": les.lobe,
        "lesion_ras_x": f"{ras[0]:.2f}",
        "lesion_ras_y": f"{ras[1]:.2f}",
        "lesion_ras_z": f"{ras[2]:.2f}",
        "diameter_mm": f"{les.diameter_mm:.2f}",
        "solid_fraction": f"{les.solid_fraction:.3f}",
        "density": density_of(les.solid_fraction),
        "ggo_hu": f"{les.ggo_hu:.1f}",
        "suvmax": f"{les.suvmax:.3f}",
        "signs": "|".join(les.signs),
        "lobulation": f"{les.lobulation:.3f}",
        "smoking": c.smoking,
        "smoke_years": c.smoke_years,
        "cea": f"{c.cea:.2f}",
        "symptom": c.symptom,
        "change": c.change,
        "family_cancer": int(c.family_cancer),
        **_stated(facts),
        "has_ct": int(p.has["ct"]),
        "has_pet": int(p.has["pet"]),
        "has_rep": int(p.has["rep"]),
    }


def _patient_job(args: tuple[LungSynthConfig, str, int]) -> dict[str, object]:
    cfg, root, index = args
    return write_patient(cfg, root, index)


def _run_parallel(jobs: list[tuple[LungSynthConfig, str, int]], workers: int) -> list[dict[str, object]]:
    """Patients in spawned worker processes; results come back in job order (output is worker-independent)."""
    ctx = multiprocessing.get_context("spawn")
    chunk = max(1, len(jobs) // (8 * workers))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(_patient_job, jobs, chunksize=chunk))


def _csv_bytes(rows: list[dict[str, object]], columns: tuple[str, ...] | list[str]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _summary(cfg: LungSynthConfig, manifest: list[dict[str, object]]) -> dict[str, object]:
    subtypes = Counter(str(r["subtype"]) for r in manifest)
    labels = Counter(str(r["label"]) for r in manifest)
    patterns = Counter("+".join(m for m in MODALITIES if r[m]) for r in manifest)
    config = json.loads(json.dumps(asdict(cfg)))
    return {
        "generator": GENERATOR,
        "version": __version__,
        "config": config,
        "n_patients": len(manifest),
        "levels": {lvl: [s for s in SUBTYPES if LEVEL_OF[s] == lvl] for lvl in LEVELS},
        "counts": {
            "subtype": {s: subtypes.get(s, 0) for s in SUBTYPES},
            "label": {lvl: labels.get(lvl, 0) for lvl in LEVELS},
        },
        "modalities": {m: sum(1 for r in manifest if r[m]) for m in MODALITIES},
        "modality_patterns": dict(sorted(patterns.items())),
        "files": {"manifest": "manifest.csv", "truth": "synth_truth.csv", "patients": "patients/"},
        "units": {"ct": "HU (int16)", "pet": "SUVbw, g/ml (float32); DICOM Units GML"},
        "orientation": "voxel (i, j, k) = LPS (left, posterior, superior); NIfTI affine is RAS",
    }


def generate_lung(
    out: str | Path, cfg: LungSynthConfig, *, overwrite: bool = False, workers: int = 1
) -> dict:
    """Write the cohort under `out` atomically; return the summary that is also written as synth_info.json."""
    if not isinstance(cfg, LungSynthConfig):
        raise TypeError(f"cfg must be a LungSynthConfig, got {type(cfg).__name__}")
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        jobs = [(cfg, str(tmp), i) for i in range(cfg.n_patients)]
        if workers == 1 or cfg.n_patients == 1:
            rows = [_patient_job(job) for job in jobs]
        else:
            rows = _run_parallel(jobs, min(int(workers), cfg.n_patients))
        manifest = [r["manifest"] for r in rows]
        truth = [r["truth"] for r in rows]
        (tmp / "manifest.csv").write_bytes(_csv_bytes(manifest, MANIFEST_COLUMNS))
        (tmp / "synth_truth.csv").write_bytes(_csv_bytes(truth, list(truth[0])))
        summary = _summary(cfg, manifest)
        (tmp / "synth_info.json").write_text(
            json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
    return summary


# ----------------------------------------------------------------------------------------------------------
# Latent views (signal checks: what each modality was rendered from)
# ----------------------------------------------------------------------------------------------------------

_ORDINAL = {  # ordered categories as numbers
    "smoking": {"never": 0.0, "former": 1.0, "current": 2.0},
    "rep_density": {"ggo": 0.0, "part_solid": 1.0, "solid": 2.0},
}


def latent_views(root: str | os.PathLike[str]) -> dict[str, pl.DataFrame]:
    """Per modality (``ct``, ``pet``, ``rep``), the numeric latent variables it was rendered from, for
    the patients that have it: ``sample_id`` (= ``patient_id``, as in the cohort table) plus

    * ``ct``: the lesion morphology the CT is rendered from: ``diameter_mm``, ``solid_fraction``,
      ``ggo_hu``, ``lobulation`` (margin amplitude) and ``vacuole`` (0/1: the air bubble drawn in the
      solid core of nodules over 8 mm); the other CT signs are named by the report only;
    * ``pet``: ``suvmax`` and ``diameter_mm`` (the PET shows the uptake of a lesion of that size);
    * ``rep``: what the report states: the clinical facts (``age``, ``smoking`` 0 never / 1 former /
      2 current, ``smoke_years``, ``log_cea``, ``symptom`` 0/1, ``change_new`` (first seen, no follow-up)
      and ``change_growth`` (grew or became more solid on follow-up), ``family_cancer``) and the stated
      reading (``rep_size_mm``, ``rep_density`` 0 ground glass / 1 part-solid / 2 solid, ``rep_solid_mm``,
      ``rep_sign_<name>`` 0/1, ``rep_suv_quoted`` 0/1, ``rep_suvmax`` (0 when not quoted),
      ``rep_impression`` 0-3, ``rep_plan`` 0-2).

    Read from ``synth_truth.csv`` under ``root`` (a cohort written by :func:`generate_lung`); for
    signal checks only, never read by the pipeline."""
    truth = pl.read_csv(Path(root) / "synth_truth.csv", infer_schema=False)
    sid = pl.col("patient_id").alias("sample_id")

    def num(name: str, alias: str | None = None) -> pl.Expr:
        return pl.col(name).cast(pl.Float64).alias(alias or name)

    def ordinal(name: str) -> pl.Expr:
        return pl.col(name).replace_strict(_ORDINAL[name], return_dtype=pl.Float64).alias(name)

    def signs(column: str, prefix: str) -> list[pl.Expr]:
        parts = pl.col(column).fill_null("").str.split("|")
        return [parts.list.contains(s).cast(pl.Float64).alias(f"{prefix}{s}") for s in SIGNS]

    has = {m: truth.filter(pl.col(f"has_{m}") == "1") for m in MODALITIES}
    vacuole = pl.col("signs").fill_null("").str.split("|").list.contains("vacuole")
    ct = has["ct"].select(
        sid, num("diameter_mm"), num("solid_fraction"), num("ggo_hu"), num("lobulation"),
        (vacuole & (pl.col("diameter_mm").cast(pl.Float64) > 8)).cast(pl.Float64).alias("vacuole"),
    )  # fmt: skip
    pet = has["pet"].select(sid, num("suvmax"), num("diameter_mm"))
    rep = has["rep"].select(
        sid,
        num("age"),
        ordinal("smoking"),
        num("smoke_years"),
        pl.col("cea").cast(pl.Float64).log().alias("log_cea"),
        (pl.col("symptom") != "none").cast(pl.Float64).alias("symptom"),
        (pl.col("change") == "new").cast(pl.Float64).alias("change_new"),
        pl.col("change").is_in(["growth", "solid_increase"]).cast(pl.Float64).alias("change_growth"),
        num("family_cancer"),
        num("rep_size_mm"),
        ordinal("rep_density"),
        num("rep_solid_mm"),
        *signs("rep_signs", "rep_sign_"),
        (pl.col("rep_suvmax").fill_null("") != "").cast(pl.Float64).alias("rep_suv_quoted"),
        pl.col("rep_suvmax").replace("", None).cast(pl.Float64).fill_null(0.0).alias("rep_suvmax"),
        num("rep_impression"),
        num("rep_plan"),
    )
    return {"ct": ct, "pet": pet, "rep": rep}


__all__ = [
    "LEVELS",
    "LEVEL_OF",
    "MANIFEST_COLUMNS",
    "SUBTYPES",
    "LungSynthConfig",
    "generate_lung",
    "latent_views",
    "lesion_box",
    "patient_id",
    "sample_patient",
]
