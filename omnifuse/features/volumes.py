"""CT and PET volumes from a DICOM series (pydicom) or a NIfTI file (nibabel), as axial slices.

Rules:

* **Orientation.** Every volume is returned as ``(S, H, W)`` float32 in the radiological display
  convention: S runs inferior → superior (slice 0 is the lowest), H anterior → posterior (row 0 is
  the front), W patient right → left (the patient's right is on the image's left). Volumes stored in
  any axis order or direction are reoriented to it (nibabel orientation tools on the voxel-to-world
  affine; oblique acquisitions go to the closest axes).
* **DICOM.** All files of the folder are read; files that are not DICOM or are not images (DICOMDIR,
  reports, notes) are ignored, a ``.dcm`` file that cannot be read makes the volume bad.
  When the folder holds several series, the one with most slices is used. Slices are ordered by
  their position along the slice normal (ImagePositionPatient · (row × column direction)), falling
  back to InstanceNumber when positions are missing.
* **Incomplete series** (:func:`series_problems`): a gap between neighbouring slice positions of more
  than 1.5 x the median spacing (missing slices), two slices at the same position, or an image slice
  of the series without PixelData make the volume bad, naming what is wrong; with
  ``allow_missing_slices`` it is read anyway (a repeated position keeps its first instance, a slice
  without pixels is left out) and the extraction report says ``n slice(s) missing``.
  Values: ``stored * RescaleSlope + RescaleIntercept`` per slice (Hounsfield units for CT). PET is
  converted to SUV (body weight): ``Units = GML`` is SUV already; ``BQML`` is divided by the
  decay-corrected injected dose per gram (RadionuclideTotalDose, RadionuclideHalfLife,
  RadiopharmaceuticalStartTime, SeriesTime, DecayCorrection, PatientWeight); ``CNTS`` uses the Philips
  SUV scale factor (7053,1000); anything else cannot be converted and makes the volume bad.
* **NIfTI.** ``get_fdata`` (scl_slope/scl_inter applied) in the units of the file (HU for CT, SUV
  for PET are expected); a 4-D file must have a single volume.
* **Intensity window** ``[low, high]`` → [0, 1] (clipped); **slice selection** ``all`` (then at most
  ``max_slices``, evenly spaced), ``every`` (every n-th slice from the first) or ``count`` (n evenly
  spaced slices including both ends, all slices when the volume has fewer).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from nibabel import orientations
from pydicom.errors import InvalidDicomError

from omnifuse.features.options import SLICE_MODES

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_TARGET = orientations.axcodes2ornt(("L", "P", "S"))  # voxel axes i → left, j → posterior, k → superior
_NOT_DICOM_SUFFIXES = {".xml", ".txt", ".json", ".csv", ".md", ".nii", ".gz", ".png", ".jpg", ".zip"}


class VolumeError(ValueError):
    """A volume that cannot be read or converted (the message names the file and the reason)."""


@dataclass
class Volume:
    data: np.ndarray  # (S, H, W) float32, see the module docstring for the axes
    spacing: tuple[float, float, float]  # mm along S, H, W
    source: str  # "dicom" | "nifti"
    notes: list[str] = field(default_factory=list)  # things worth a line in the extraction report


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: str | Path, modality: str = "ct", allow_missing_slices: bool = False) -> Volume:
    """A volume from a NIfTI file or a DICOM series folder (``modality`` ``ct`` or ``pet``;
    ``allow_missing_slices``: see :func:`check_series`)."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path, modality, allow_missing_slices)
    if is_nifti(path):
        return read_nifti(path)
    raise VolumeError(f"{path}: expected a NIfTI file (.nii, .nii.gz) or a DICOM series folder")


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorient voxel data with a RAS affine to (S, H, W) as described in the module docstring."""
    ornt = orientations.io_orientation(affine)
    transform = orientations.ornt_transform(ornt, _TARGET)
    out = orientations.apply_orientation(data, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, data.shape)
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(new_affine))
    return np.ascontiguousarray(out.transpose(2, 1, 0), dtype=np.float32), (sz, sy, sx)


def read_nifti(path: str | Path) -> Volume:
    path = Path(path)
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj, dtype=np.float32)
        # dataobj applies scl_slope / scl_inter like get_fdata, without a float64 copy
    except Exception as exc:
        raise VolumeError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeError(f"{path}: expected a 3-D volume, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise VolumeError(f"{path}: non-finite voxel values")
    out, spacing = _canonical(data, img.affine)
    return Volume(out, spacing, "nifti")


def nifti_slice_count(path: str | Path) -> int:
    """Number of axial slices, from the header only."""
    img = nib.load(str(path))
    ornt = orientations.io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return int(img.shape[axis])


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.upper() != "DICOMDIR" and p.suffix.lower() not in _NOT_DICOM_SUFFIXES
    )


def dicom_slice_count(folder: str | Path) -> int:
    """Upper bound of the number of slices of a series folder (its candidate files), without reading."""
    return len(_dicom_files(Path(folder)))


def _tm_seconds(value: str | None) -> float | None:
    """DICOM TM ``HHMMSS.FFFFFF`` (or a DT ending in it) → seconds since midnight."""
    if not value:
        return None
    text = str(value).strip()
    if len(text) >= 14 and text[:8].isdigit():  # DT: YYYYMMDDHHMMSS...
        text = text[8:]
    whole, _, frac = text.partition(".")
    whole = whole.ljust(6, "0")
    try:
        h, m, s = int(whole[0:2]), int(whole[2:4]), int(whole[4:6])
    except ValueError:
        return None
    return h * 3600 + m * 60 + s + (float(f"0.{frac}") if frac.isdigit() else 0.0)


def _suv_factor(ds: pydicom.Dataset, where: Path) -> float:
    """Multiplier from rescaled PET values to SUV (body weight)."""
    units = str(ds.get("Units", "")).upper()
    if units == "GML":
        return 1.0
    if units == "CNTS" and (0x7053, 0x1000) in ds:
        return float(ds[0x7053, 0x1000].value)
    if units != "BQML":
        raise VolumeError(f"{where}: PET Units {units or '(none)'!r} cannot be converted to SUV")
    try:
        weight_g = float(ds.PatientWeight) * 1000.0
        info = ds.RadiopharmaceuticalInformationSequence[0]
        dose = float(info.RadionuclideTotalDose)
        half_life = float(info.RadionuclideHalfLife)
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise VolumeError(
            f"{where}: PET in Bq/ml without PatientWeight or injected dose/half-life: cannot compute SUV"
        ) from exc
    if weight_g <= 0 or dose <= 0 or half_life <= 0:
        raise VolumeError(f"{where}: PET weight, dose or half-life is not positive: cannot compute SUV")
    decay = 1.0
    if str(ds.get("DecayCorrection", "START")).upper() == "START":
        start = _tm_seconds(info.get("RadiopharmaceuticalStartDateTime")) or _tm_seconds(
            info.get("RadiopharmaceuticalStartTime")
        )
        scan = _tm_seconds(ds.get("SeriesTime")) or _tm_seconds(ds.get("AcquisitionTime"))
        if start is None or scan is None:
            raise VolumeError(f"{where}: PET injection or series time missing: cannot decay-correct the dose")
        elapsed = (scan - start) % 86400.0  # an injection before midnight and a scan after it
        decay = math.pow(2.0, -elapsed / half_life)
    return weight_g / (dose * decay)


def _is_image_slice(ds: pydicom.Dataset) -> bool:
    """An image slice (it has the image pixel module's size or a position), as opposed to a report,
    presentation state or other non-image object stored next to the series."""
    return ("Rows" in ds and "Columns" in ds) or "ImagePositionPatient" in ds


def _read_dicom_files(folder: Path) -> tuple[list[pydicom.Dataset], list[str], list[pydicom.Dataset]]:
    """(image slices of the largest series, notes, image slices of that series without PixelData)."""
    datasets, notes, no_pixels = [], [], []
    for path in _dicom_files(folder):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError as exc:
            if path.suffix.lower() == ".dcm":
                raise VolumeError(f"{path}: not a readable DICOM file ({exc})") from exc
            continue
        except Exception as exc:
            raise VolumeError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc
        ds.filename = str(path)
        if "PixelData" not in ds:
            if _is_image_slice(ds):
                no_pixels.append(ds)
            continue
        datasets.append(ds)
    if not datasets:
        raise VolumeError(f"{folder}: no DICOM image files")
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
    chosen = series.most_common(1)[0][0]
    if len(series) > 1:
        notes.append(f"{len(series)} series in the folder, used the largest ({series[chosen]} files)")
        datasets = [ds for ds in datasets if str(ds.get("SeriesInstanceUID", "")) == chosen]
    no_pixels = [ds for ds in no_pixels if str(ds.get("SeriesInstanceUID", "")) == chosen]
    return datasets, notes, no_pixels


@dataclass(frozen=True)
class SeriesProblems:
    """What makes a DICOM series incomplete (:func:`series_problems`)."""

    missing: int = 0  # slices missing in gaps of the positions
    repeated: int = 0  # slices at an already occupied position
    no_pixels: int = 0  # image slices of the series without PixelData
    details: tuple[str, ...] = ()

    @property
    def slices_missing(self) -> int:
        return self.missing + self.no_pixels

    def __bool__(self) -> bool:
        return bool(self.missing or self.repeated or self.no_pixels)

    def describe(self) -> str:
        return "; ".join(self.details)


def series_problems(
    positions: list[float], no_pixels: list[pydicom.Dataset], max_gap: float = 1.5
) -> SeriesProblems:
    """Gaps (more than ``max_gap`` x the median spacing) and repeated values among the slice
    ``positions`` along the normal (mm; empty when the series has none), and the slices without pixel
    data, each described in ``details`` (with the files or positions concerned)."""
    details: list[str] = []
    missing = repeated = 0
    ordered = np.sort(np.round(np.asarray(positions, dtype=np.float64), 3))
    steps = np.diff(ordered)
    repeated = int((steps == 0).sum())
    if repeated:
        at = sorted({float(ordered[i]) for i in np.flatnonzero(steps == 0)})
        details.append(f"{repeated} slice(s) at a repeated position (at {at[:3]} mm)")
    spacing = steps[steps > 0]
    if spacing.size >= 1:
        median = float(np.median(spacing))
        for i in np.flatnonzero(steps > max_gap * median):
            n = max(1, round(float(steps[i]) / median) - 1)
            missing += n
            details.append(
                f"{n} slice(s) missing between {ordered[i]:g} and {ordered[i + 1]:g} mm (gap "
                f"{steps[i]:g} mm, median spacing {median:g} mm)"
            )
    if no_pixels:
        names = [Path(str(ds.filename)).name for ds in no_pixels[:3]]
        details.append(f"{len(no_pixels)} slice(s) without pixel data ({', '.join(names)})")
    return SeriesProblems(missing, repeated, len(no_pixels), tuple(details))


def _gap_keys(
    keys: list[float], no_pixels: list[pydicom.Dataset], normal: np.ndarray, by_position: bool
) -> list[float]:
    """Slice positions for the gap check: the image slices' and those of slices without pixel data
    (counted once, as such, not again as a gap); none when the series has no positions."""
    if not by_position:
        return []
    extra = []
    for ds in no_pixels:
        try:
            extra.append(float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)))
        except (AttributeError, TypeError, ValueError):
            continue
    return keys + extra


def check_series(
    folder: Path, problems: SeriesProblems, allow_missing_slices: bool, notes: list[str]
) -> None:
    """Raise :class:`VolumeError` naming the folder and the problems of an incomplete series, or, with
    ``allow_missing_slices``, note them (the report then says ``n slice(s) missing``)."""
    if not problems:
        return
    if not allow_missing_slices:
        raise VolumeError(
            f"{folder}: incomplete DICOM series: {problems.describe()} (allow_missing_slices encodes it "
            "anyway and notes it in the extraction report)"
        )
    lead = f"{problems.slices_missing} slice(s) missing" if problems.slices_missing else "irregular series"
    notes.append(f"{lead}: {problems.describe()}")


def read_dicom_series(folder: str | Path, modality: str = "ct", allow_missing_slices: bool = False) -> Volume:
    """One series folder → :class:`Volume` (HU for CT, SUV for PET); an incomplete series is an error
    unless ``allow_missing_slices`` (:func:`check_series`)."""
    folder = Path(folder)
    datasets, notes, no_pixels = _read_dicom_files(folder)
    first = datasets[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise VolumeError(f"{folder}: multi-frame DICOM is not supported (export one file per slice)")
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in datasets}
    if len(shapes) > 1:
        raise VolumeError(f"{folder}: slices of different sizes {sorted(shapes)}")
    try:
        iop = np.asarray([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
        row_dir, col_dir = iop[:3], iop[3:]
        normal = np.cross(row_dir, col_dir)
        keys = [float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)) for ds in datasets]
        by_position = True
    except (AttributeError, TypeError, ValueError):
        if any("InstanceNumber" not in ds for ds in datasets):
            raise VolumeError(
                f"{folder}: slices have neither ImagePositionPatient/Orientation nor InstanceNumber"
            ) from None
        row_dir, col_dir, normal = np.eye(3)
        keys = [float(ds.InstanceNumber) for ds in datasets]
        by_position = False
        notes.append("no ImagePositionPatient: ordered by InstanceNumber, axial orientation assumed")
    check_series(folder, series_problems(_gap_keys(keys, no_pixels, normal, by_position), no_pixels),
                 allow_missing_slices, notes)  # fmt: skip
    order = sorted(range(len(datasets)), key=lambda i: (keys[i], int(datasets[i].get("InstanceNumber", 0))))
    kept, seen = [], set()
    for i in order:
        key = round(keys[i], 3)
        if key in seen:
            continue
        seen.add(key)
        kept.append(i)
    slices = []
    for i in kept:
        ds = datasets[i]
        try:
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:
            raise VolumeError(
                f"{ds.filename}: cannot decode pixel data ({type(exc).__name__}: {exc})"
            ) from exc
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        values = pixels * slope + intercept
        if modality == "pet" or str(ds.get("Modality", "")).upper() == "PT":
            values = values * _suv_factor(ds, Path(ds.filename))
        slices.append(values)
    data = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows j, cols i, k) → (i, j, k)
    if not np.isfinite(data).all():
        raise VolumeError(f"{folder}: non-finite values after rescaling")
    spacing_rc = [float(v) for v in first.get("PixelSpacing", [1.0, 1.0])]
    positions = sorted(keys[i] for i in kept)
    dz = float(np.median(np.diff(positions))) if by_position and len(positions) > 1 else None
    dz = dz or float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 1) or 1)
    origin = (
        np.asarray([float(v) for v in datasets[kept[0]].ImagePositionPatient]) if by_position else np.zeros(3)
    )
    lps = np.eye(4)
    lps[:3, 0] = row_dir * spacing_rc[1]  # column index i moves along the row direction
    lps[:3, 1] = col_dir * spacing_rc[0]  # row index j moves along the column direction
    lps[:3, 2] = normal * dz
    lps[:3, 3] = origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    out, spacing = _canonical(data, ras)
    return Volume(out, spacing, "dicom", notes)


# --------------------------------------------------------------------------------------------------
# Intensities and slices
# --------------------------------------------------------------------------------------------------


def apply_window(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values clipped to ``[low, high]`` and scaled to [0, 1] (float32)."""
    if not high > low:
        raise ValueError(f"intensity window must have high > low, got [{low}, {high}]")
    return ((np.clip(data, low, high) - low) / (high - low)).astype(np.float32)


def select_slices(n_slices: int, mode: str = "all", n: int = 0, max_slices: int = 0) -> np.ndarray:
    """Indices of the slices to encode (ascending); see the module docstring for the rules."""
    if mode not in SLICE_MODES:
        raise ValueError(f"slice mode must be one of {SLICE_MODES}, got {mode!r}")
    if n_slices < 1:
        raise ValueError("a volume needs at least one slice")
    if mode == "every":
        if n < 1:
            raise ValueError("slice mode 'every' needs n >= 1")
        idx = np.arange(0, n_slices, n)
    elif mode == "count":
        if n < 1:
            raise ValueError("slice mode 'count' needs n >= 1")
        idx = np.arange(n_slices) if n_slices <= n else np.round(np.linspace(0, n_slices - 1, n)).astype(int)
    else:
        idx = np.arange(n_slices)
    if max_slices and len(idx) > max_slices:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_slices)).astype(int)]
    return idx.astype(np.int64)


def selected_count(n_slices: int, mode: str, n: int, max_slices: int) -> int:
    return len(select_slices(n_slices, mode, n, max_slices))
