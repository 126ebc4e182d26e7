"""CT and PET volumes from a DICOM series (pydicom) or a NIfTI file (nibabel), as axial slices.

Rules:

* **Orientation.** Every volume is returned as ``(S, H, W)`` float32 in the radiological display
  convention: S runs inferior → superior (slice 0 is the lowest), H anterior → posterior (row 0 is
  the front), W patient right → left (the patient's right is on the image's left). Volumes stored in
  any axis order or direction are reoriented to it (nibabel orientation tools on the voxel-to-world
  affine; oblique acquisitions go to the closest axes).
* **DICOM.** All files of the folder are read; files that are not DICOM or carry no pixel data
  (DICOMDIR, reports, notes) are ignored, a ``.dcm`` file that cannot be read makes the volume bad.
  When the folder holds several series, the one with most slices is used. Slices are ordered by
  their position along the slice normal (ImagePositionPatient · (row × column direction)), falling
  back to InstanceNumber when positions are missing; a repeated position keeps its first instance.
  Values: ``stored * RescaleSlope + RescaleIntercept`` per slice (Hounsfield units for CT). PET is
  converted to SUV (body weight): ``Units = GML`` is SUV already; ``BQML`` is divided by the
  decay-corrected injected dose per gram (RadionuclideTotalDose, RadionuclideHalfLife,
  RadiopharmaceuticalStartTime, SeriesTime, DecayCorrection, PatientWeight); ``CNTS`` uses the Philips
  SUV scale factor (7053,1000); anything else cannot be converted and makes the volume bad.
* **NIfTI.** ``get_fdata`` (scl_slope/scl_inter applied) in the units of the file (HU for CT, SUV
  for PET are expected); a 4-D file must have a single volume.
* **Geometry.** :attr:`Volume.affine` maps an index ``(s, h, w)`` of ``Volume.data`` to patient
  coordinates in millimetres in the DICOM convention (LPS: x toward the patient's left, y toward
  posterior, z toward the head), so a point given in the scanner's frame of reference can be found in
  the array whatever the storage order. NIfTI files are RAS (nibabel's convention): x and y change sign.
  :attr:`Volume.file_affine` maps an index ``(i, j, k)`` of the NIfTI array *as stored* to LPS (None
  for DICOM, whose storage has no single array order).
* **Region-of-interest crop** (:func:`crop_roi`): a box of ``2 * round(h / spacing) + 1`` voxels along
  each axis (h = the half-width in mm) centred on the voxel nearest to the ROI's centre, so the ROI's
  centre is the middle slice, row and column and every crop of the same half-width covers the same
  physical extent (the lesion keeps its size in the resized slice). Voxels of the box outside the
  volume are filled with the volume's minimum (air for CT, 0 for PET) and noted; an ROI whose centre
  lies outside the volume is an error. The ROI is a box (or a point) in LPS millimetres, or in voxel
  indices of a NIfTI file as stored (0-based ``i, j, k``, mapped through its affine).
* **Intensity window** ``[low, high]`` → [0, 1] (clipped); **slice selection** ``all`` (then at most
  ``max_slices``, evenly spaced), ``every`` (every n-th slice from the first) or ``count`` (n evenly
  spaced slices including both ends, all slices when the volume has fewer; a single slice is the
  middle one), applied to the volume or, with a crop, to the crop's slices (whose middle slice goes
  through the ROI's centre).
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


ROI_SPACES = ("lps_mm", "voxel")


@dataclass(frozen=True)
class Roi:
    """A region of interest: a box ``(x0, y0, z0, x1, y1, z1)`` with ``x0 <= x1`` etc. (a point when
    the corners coincide), in patient LPS millimetres (``space`` ``lps_mm``) or in 0-based voxel indices
    ``(i, j, k)`` of a NIfTI file as stored (``voxel``). ``source`` names where it came from (the
    cohort column), for messages."""

    space: str
    box: tuple[float, float, float, float, float, float]
    source: str = ""

    def __post_init__(self) -> None:
        if self.space not in ROI_SPACES:
            raise ValueError(f"ROI space must be one of {ROI_SPACES}, got {self.space!r}")
        box = tuple(float(v) for v in self.box)
        if len(box) != 6 or not all(math.isfinite(v) for v in box):
            raise ValueError(f"ROI box must be 6 finite numbers, got {self.box!r}")
        if any(box[a] > box[a + 3] for a in range(3)):
            raise ValueError(f"ROI box must have x0 <= x1, y0 <= y1, z0 <= z1, got {list(box)}")
        object.__setattr__(self, "box", box)

    @property
    def centre(self) -> np.ndarray:
        lo, hi = np.asarray(self.box[:3]), np.asarray(self.box[3:])
        return (lo + hi) / 2

    def describe(self) -> str:
        unit = "mm LPS" if self.space == "lps_mm" else "voxel"
        where = f" ({self.source})" if self.source else ""
        return f"ROI centre {', '.join(f'{v:g}' for v in np.round(self.centre, 2))} {unit}{where}"


@dataclass
class Volume:
    data: np.ndarray  # (S, H, W) float32, see the module docstring for the axes
    spacing: tuple[float, float, float]  # mm along S, H, W
    source: str  # "dicom" | "nifti"
    notes: list[str] = field(default_factory=list)  # things worth a line in the extraction report
    affine: np.ndarray | None = None  # 4x4: index (s, h, w) of data -> LPS mm
    file_affine: np.ndarray | None = None  # 4x4: NIfTI index (i, j, k) as stored -> LPS mm


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def read_volume(path: str | Path, modality: str = "ct") -> Volume:
    """A volume from a NIfTI file or a DICOM series folder (``modality`` ``ct`` or ``pet``)."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: no such file or folder")
    if path.is_dir():
        return read_dicom_series(path, modality)
    if is_nifti(path):
        return read_nifti(path)
    raise VolumeError(f"{path}: expected a NIfTI file (.nii, .nii.gz) or a DICOM series folder")


_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SHW_TO_IJK = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def _canonical(
    data: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Reorient voxel data with a RAS affine to (S, H, W) as described in the module docstring; also
    return the LPS affine of the (s, h, w) index."""
    ornt = orientations.io_orientation(affine)
    transform = orientations.ornt_transform(ornt, _TARGET)
    out = orientations.apply_orientation(data, transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, data.shape)
    sx, sy, sz = (float(v) for v in nib.affines.voxel_sizes(new_affine))
    lps = _RAS_TO_LPS @ new_affine @ _SHW_TO_IJK
    return np.ascontiguousarray(out.transpose(2, 1, 0), dtype=np.float32), (sz, sy, sx), lps


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
    out, spacing, lps = _canonical(data, img.affine)
    return Volume(out, spacing, "nifti", affine=lps, file_affine=_RAS_TO_LPS @ img.affine)


def nifti_slice_count(path: str | Path) -> int:
    """Number of axial slices, from the header only."""
    img = nib.load(str(path))
    ornt = orientations.io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return int(img.shape[axis])


def nifti_slice_spacing(path: str | Path) -> float:
    """Distance between axial slices (mm), from the header only."""
    img = nib.load(str(path))
    ornt = orientations.io_orientation(img.affine)
    axis = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    return float(nib.affines.voxel_sizes(img.affine)[axis])


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


def dicom_slice_spacing(folder: str | Path, max_files: int = 8) -> float | None:
    """Smallest distance between slice positions among the headers of the first ``max_files`` files
    of a series folder (mm; None if unknown): the slice spacing when file names follow the slice order,
    a multiple of it otherwise."""
    positions = []
    for path in _dicom_files(Path(folder))[:max_files]:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            normal = np.cross(iop[:3], iop[3:])
            positions.append(float(np.dot([float(v) for v in ds.ImagePositionPatient], normal)))
        except Exception:
            continue
    gaps = np.abs(np.diff(sorted(positions)))
    gaps = gaps[gaps > 1e-3]
    return float(gaps.min()) if len(gaps) else None


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


def _read_dicom_files(folder: Path) -> tuple[list[pydicom.Dataset], list[str]]:
    datasets, notes = [], []
    for path in _dicom_files(folder):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError as exc:
            if path.suffix.lower() == ".dcm":
                raise VolumeError(f"{path}: not a readable DICOM file ({exc})") from exc
            continue
        except Exception as exc:
            raise VolumeError(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from exc
        if "PixelData" not in ds:
            continue
        ds.filename = str(path)
        datasets.append(ds)
    if not datasets:
        raise VolumeError(f"{folder}: no DICOM image files")
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for ds in datasets)
    if len(series) > 1:
        chosen = series.most_common(1)[0][0]
        notes.append(f"{len(series)} series in the folder, used the largest ({series[chosen]} files)")
        datasets = [ds for ds in datasets if str(ds.get("SeriesInstanceUID", "")) == chosen]
    return datasets, notes


def read_dicom_series(folder: str | Path, modality: str = "ct") -> Volume:
    """One series folder → :class:`Volume` (HU for CT, SUV for PET)."""
    folder = Path(folder)
    datasets, notes = _read_dicom_files(folder)
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
    order = sorted(range(len(datasets)), key=lambda i: (keys[i], int(datasets[i].get("InstanceNumber", 0))))
    kept, seen = [], set()
    for i in order:
        key = round(keys[i], 3)
        if key in seen:
            continue
        seen.add(key)
        kept.append(i)
    if len(kept) < len(order):
        notes.append(f"{len(order) - len(kept)} slice(s) at a repeated position dropped")
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
    out, spacing, lps_affine = _canonical(data, ras)
    return Volume(out, spacing, "dicom", notes, affine=lps_affine)


# --------------------------------------------------------------------------------------------------
# Intensities and slices
# --------------------------------------------------------------------------------------------------


def apply_window(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """Values clipped to ``[low, high]`` and scaled to [0, 1] (float32)."""
    if not high > low:
        raise ValueError(f"intensity window must have high > low, got [{low}, {high}]")
    return ((np.clip(data, low, high) - low) / (high - low)).astype(np.float32)


def crop_roi(volume: Volume, roi: Roi, half_width_mm: float) -> tuple[np.ndarray, list[str]]:
    """The (S, H, W) box of ``volume`` around ``roi`` (module docstring, "Region-of-interest crop")
    and notes for the extraction report. Raises :class:`VolumeError` when the ROI cannot be used."""
    if not half_width_mm > 0:
        raise ValueError(f"crop half-width must be > 0 mm, got {half_width_mm}")
    if volume.affine is None:
        raise VolumeError("the volume has no geometry (affine): cannot place an ROI")
    if roi.space == "voxel":
        if volume.file_affine is None:
            raise VolumeError(
                f"{roi.describe()}: voxel ROIs need a NIfTI file (a DICOM series has no single voxel "
                "order); give the ROI in millimetres (roi_lps_mm / roi_ras_mm) instead"
            )
        centre_lps = (volume.file_affine @ np.append(roi.centre, 1.0))[:3]
    else:
        centre_lps = roi.centre
    index = (np.linalg.inv(volume.affine) @ np.append(centre_lps, 1.0))[:3]
    shape = np.asarray(volume.data.shape)
    if np.any(index < -0.5) or np.any(index > shape - 0.5):
        corners = [volume.affine @ np.array([*c, 1.0]) for c in ((0, 0, 0), tuple(shape - 1))]
        lo = np.minimum(corners[0][:3], corners[1][:3])
        hi = np.maximum(corners[0][:3], corners[1][:3])
        extent = ", ".join(f"{a} {lo[i]:.1f}..{hi[i]:.1f}" for i, a in enumerate("xyz"))
        raise VolumeError(
            f"{roi.describe()} lies outside the volume (LPS mm: {extent}; centre at "
            f"{', '.join(f'{v:.1f}' for v in centre_lps)})"
        )
    half = np.asarray([max(0, round(half_width_mm / sp)) for sp in volume.spacing], dtype=int)
    centre = np.rint(index).astype(int)
    lo, hi = centre - half, centre + half + 1
    out = np.full(tuple(2 * half + 1), float(volume.data.min()), dtype=np.float32)
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, shape)
    dst_lo = src_lo - lo
    dst = tuple(slice(a, a + b - c) for a, b, c in zip(dst_lo, src_hi, src_lo, strict=True))
    out[dst] = volume.data[tuple(slice(a, b) for a, b in zip(src_lo, src_hi, strict=True))]
    notes = []
    if np.any(lo < 0) or np.any(hi > shape):
        notes.append("crop extends outside the volume: padded with the volume minimum")
    return out, notes


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
        idx = np.arange(n_slices) if n_slices <= n else spread_indices(n_slices, n)
    else:
        idx = np.arange(n_slices)
    if max_slices and len(idx) > max_slices:
        idx = idx[spread_indices(len(idx), max_slices)]
    return idx.astype(np.int64)


def spread_indices(length: int, k: int) -> np.ndarray:
    """``k`` evenly spaced positions in ``range(length)``, both ends included; one: the middle."""
    if k == 1:
        return np.asarray([(length - 1) // 2])
    return np.round(np.linspace(0, length - 1, k)).astype(int)


def selected_count(n_slices: int, mode: str, n: int, max_slices: int) -> int:
    return len(select_slices(n_slices, mode, n, max_slices))
