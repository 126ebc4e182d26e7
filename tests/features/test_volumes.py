"""CT/PET volume reading: DICOM and NIfTI agree, orientation and slice order, units, bad inputs."""

from __future__ import annotations

import math
import re

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from omnifuse.features.volumes import (
    VolumeError,
    apply_window,
    dicom_slice_count,
    nifti_slice_count,
    read_dicom_series,
    read_nifti,
    read_volume,
    select_slices,
)
from tests.helpers import make_lung, shared_data

CT_UID = "1.2.826.0.1.3680043.8.498.1"


def write_slice(path, pixels, z, instance, series="1.2.3.4", *, modality="CT", iop=(1, 0, 0, 0, 1, 0),
                origin=(-10.0, -20.0), slope=1.0, intercept=-1024.0, **extra):  # fmt: skip
    """One axial DICOM slice (uint16 pixels) at height ``z``."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = modality, series, instance
    ds.ImageOrientationPatient = list(iop)
    ds.ImagePositionPatient = [origin[0], origin[1], float(z)]
    ds.PixelSpacing = [2.0, 1.5]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
    for key, value in extra.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def labelled_volume(n=5, rows=6, cols=4):
    """Stored values that encode (slice, row, column), so any reordering is visible."""
    k, j, i = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    return (1000 + 100 * k + 10 * j + i).astype(np.uint16)  # (slice, row, col)


def test_real_ct_series_reads_in_hu_with_the_right_orientation_and_slice_count():
    root = shared_data("lung-pet-ct-dx-ct-sample")
    folder = root / "Lung_Dx-A0002_CT_B40f"
    vol = read_volume(folder, "ct")
    assert vol.data.shape == (30, 512, 512) and vol.source == "dicom"
    assert vol.spacing == pytest.approx((8.0, 0.646484375, 0.646484375))
    assert dicom_slice_count(folder) == 30
    data = vol.data
    assert data.min() == -1024 and 1000 < data.max() < 4000  # HU: air, up to bone
    assert data[:, :20, :20].mean() < -990  # outside the body: air
    assert -950 < np.median(data[12:18, 200:300, 120:200]) < -600  # right lung field: aerated
    bone_rows = np.nonzero(data > 400)[1]
    assert bone_rows.mean() > 300  # spine and posterior ribs at the bottom: posterior = high rows
    # slices go up: InstanceNumber 1 is the top (z = 312 mm), so it is our last slice
    by_uid = {}
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_uid[ds.SOPInstanceUID] = (float(ds.ImagePositionPatient[2]), int(ds.InstanceNumber))
    order = sorted(by_uid.values())
    assert [n for _, n in order] == list(range(30, 0, -1))
    # tumour boxes (pixel rows/columns of the original slices): soft tissue inside the box, and
    # more than in the mirrored box on the other side (a left-right flip would swap them)
    for xml in sorted((root / "annotations_A0002").glob("*.xml")):
        text = xml.read_text()
        x0, y0, x1, y1 = (
            int(re.search(f"<{k}>(\\d+)</{k}>", text)[1]) for k in ("xmin", "ymin", "xmax", "ymax")
        )
        k = [z for z, _ in order].index(by_uid[xml.stem][0])
        box = data[k, y0:y1, x0:x1]
        mirrored = data[k, y0:y1, 512 - x1 : 512 - x0]
        assert np.median(box) > -200, xml.name
        assert box.mean() > mirrored.mean() + 50, xml.name


@pytest.fixture(scope="module")
def lung(tmp_path_factory):
    return make_lung(tmp_path_factory.mktemp("lung") / "lung", n_patients=2, dicom=True)


def test_nifti_and_dicom_of_the_same_patient_agree(lung):
    for m in ("ct", "pet"):
        a = read_volume(lung / "patients" / "LUNG0001" / f"{m}.nii.gz", m)
        b = read_volume(lung / "patients" / "LUNG0001" / f"{m}_dicom", m)
        assert a.data.shape == b.data.shape and a.spacing == pytest.approx(b.spacing)
        tolerance = 0 if m == "ct" else 1e-3 * float(a.data.max())  # PET: int16 quantisation
        np.testing.assert_allclose(a.data, b.data, atol=tolerance)
    ct = read_volume(lung / "patients" / "LUNG0001" / "ct.nii.gz")
    assert ct.data.shape == (16, 32, 32) and ct.spacing == pytest.approx((10.0, 7.0, 7.0))
    assert nifti_slice_count(lung / "patients" / "LUNG0001" / "ct.nii.gz") == 16


def test_nifti_storage_order_does_not_change_the_volume(lung, tmp_path):
    path = lung / "patients" / "LUNG0001" / "ct.nii.gz"
    reference = read_nifti(path).data
    img = nib.load(str(path))
    for name, ornt in (("ras", [[0, -1], [1, -1], [2, 1]]), ("kji", [[2, 1], [1, 1], [0, 1]]),
                       ("flipz", [[0, 1], [1, 1], [2, -1]])):  # fmt: skip
        other = img.as_reoriented(np.asarray(ornt))
        out = tmp_path / f"{name}.nii.gz"
        nib.save(other, str(out))
        assert read_nifti(out).data.shape == reference.shape
        np.testing.assert_array_equal(read_nifti(out).data, reference, err_msg=name)
        assert nifti_slice_count(out) == reference.shape[0]


def test_dicom_slices_are_ordered_by_position_not_by_name_or_instance(tmp_path):
    stored = labelled_volume()
    # file names and instance numbers in a scrambled order; z decreasing with the instance number
    for rank, k in enumerate((3, 0, 4, 1, 2)):
        write_slice(tmp_path / f"IM{rank}.dcm", stored[k], z=100.0 + 5 * k, instance=5 - k)
    vol = read_dicom_series(tmp_path)
    expected = stored.astype(np.float32) - 1024
    np.testing.assert_array_equal(vol.data, expected)  # axial, standard orientation: unchanged
    assert vol.spacing == pytest.approx((5.0, 2.0, 1.5))


def test_flipped_in_plane_orientation_is_normalised(tmp_path):
    stored = labelled_volume()
    for k in range(5):  # rows run anterior, columns run to the patient's right: both flipped
        write_slice(tmp_path / f"s{k}.dcm", stored[k], z=5.0 * k, instance=k + 1, iop=(-1, 0, 0, 0, -1, 0))
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.data, stored[:, ::-1, ::-1].astype(np.float32) - 1024)


def test_extra_files_repeated_positions_and_several_series(tmp_path):
    stored = labelled_volume()
    for k in range(5):
        write_slice(tmp_path / f"a{k}.dcm", stored[k], z=5.0 * k, instance=k + 1, series="1.1")
    write_slice(tmp_path / "dup.dcm", stored[2], z=10.0, instance=9, series="1.1")  # same position
    for k in range(2):  # a short second series (e.g. a localizer)
        write_slice(tmp_path / f"b{k}.dcm", stored[k], z=5.0 * k, instance=k + 1, series="1.2")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 200)
    with pytest.raises(VolumeError, match=r"1 slice\(s\) at a repeated position \(at \[10\.0\] mm\)"):
        read_dicom_series(tmp_path)  # a repeated position is an incomplete series by default
    vol = read_dicom_series(tmp_path, allow_missing_slices=True)
    assert vol.data.shape == (5, 6, 4)
    assert any("2 series" in n for n in vol.notes) and any("repeated position" in n for n in vol.notes)


def test_bad_dicom_inputs_name_the_file(tmp_path):
    stored = labelled_volume(n=3)
    for k in range(3):
        write_slice(tmp_path / f"s{k}.dcm", stored[k], z=5.0 * k, instance=k + 1)
    (tmp_path / "s1.dcm").write_bytes(b"garbage" * 20)
    with pytest.raises(VolumeError, match=r"s1\.dcm"):
        read_dicom_series(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VolumeError, match="no DICOM image files"):
        read_dicom_series(empty)
    with pytest.raises(VolumeError, match="no such file"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(VolumeError, match=r"broken\.nii\.gz"):
        read_volume(tmp_path / "broken.nii.gz")


def pet_series(folder, **tags):
    folder.mkdir()
    stored = labelled_volume(n=2)
    for k in range(2):
        write_slice(folder / f"p{k}.dcm", stored[k], z=5.0 * k, instance=k + 1, modality="PT", slope=0.5,
                    intercept=0.0, **tags)  # fmt: skip
    return stored.astype(np.float32) * 0.5


def test_pet_values_are_converted_to_suv(tmp_path):
    activity = pet_series(tmp_path / "gml", Units="GML")
    np.testing.assert_allclose(read_dicom_series(tmp_path / "gml", "pet").data, activity)
    info = Dataset()
    info.RadionuclideTotalDose, info.RadionuclideHalfLife = "370000000", "6586.2"
    info.RadiopharmaceuticalStartTime = "093000.00"
    pet_series(tmp_path / "bq", Units="BQML", PatientWeight="70", DecayCorrection="START",
               SeriesTime="103000", RadiopharmaceuticalInformationSequence=[info])  # fmt: skip
    decayed = 370e6 * math.pow(2, -3600 / 6586.2)
    np.testing.assert_allclose(
        read_dicom_series(tmp_path / "bq", "pet").data, activity * 70000 / decayed, rtol=1e-5
    )
    pet_series(tmp_path / "cnts", Units="CNTS")
    with pytest.raises(VolumeError, match="CNTS"):
        read_dicom_series(tmp_path / "cnts", "pet")
    pet_series(tmp_path / "noweight", Units="BQML")
    with pytest.raises(VolumeError, match="PatientWeight"):
        read_dicom_series(tmp_path / "noweight", "pet")


def test_nifti_4d_with_one_volume_and_too_many(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4, 1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "one.nii"))
    assert read_nifti(tmp_path / "one.nii").data.shape == (4, 3, 2)
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.float32), np.eye(4)), str(tmp_path / "two.nii"))
    with pytest.raises(VolumeError, match="3-D"):
        read_nifti(tmp_path / "two.nii")


def test_slice_selection():
    assert select_slices(5).tolist() == [0, 1, 2, 3, 4]
    assert select_slices(10, "every", 3).tolist() == [0, 3, 6, 9]
    assert select_slices(9, "count", 3).tolist() == [0, 4, 8]
    assert select_slices(2, "count", 5).tolist() == [0, 1]
    assert select_slices(100, "all", max_slices=4).tolist() == [0, 33, 66, 99]
    with pytest.raises(ValueError, match="mode"):
        select_slices(5, "random")
    with pytest.raises(ValueError, match="n >= 1"):
        select_slices(5, "count", 0)


def test_window():
    out = apply_window(np.array([-2000.0, -1350.0, -600.0, 150.0, 3000.0]), -1350, 150)
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError, match="high > low"):
        apply_window(np.zeros(2), 1, 1)
