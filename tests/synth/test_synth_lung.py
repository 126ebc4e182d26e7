"""Synthetic lung cohort: real files, deterministic bytes, plausible images, reports and signal."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pydicom
import pytest

from omnifuse.synth.lung import (
    LEVEL_OF,
    MANIFEST_COLUMNS,
    SUBTYPES,
    LungSynthConfig,
    generate_lung,
    latent_views,
)
from omnifuse.synth.lung_report import REPORT_MAX_CHARS, REPORT_MIN_CHARS, SECTIONS

SMALL = dict(
    ct_shape=(48, 48, 24),
    ct_spacing=(7.0, 7.0, 10.0),
    pet_shape=(24, 24, 12),
    pet_spacing=(14.0, 14.0, 20.0),
)
TINY = dict(
    ct_shape=(24, 24, 12),
    ct_spacing=(14.0, 14.0, 20.0),
    pet_shape=(12, 12, 6),
    pet_spacing=(28.0, 28.0, 40.0),
)


def small_config(**overrides: object) -> LungSynthConfig:
    options = dict(n_patients=12, seed=7, p_ct=0.9, p_pet=0.6, p_rep=0.6, dicom=True, **SMALL)
    return LungSynthConfig(**{**options, **overrides})


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_truth(root: Path) -> dict[str, dict[str, str]]:
    with open(root / "synth_truth.csv", newline="", encoding="utf-8") as fh:
        return {row["patient_id"]: row for row in csv.DictReader(fh)}


def lesion_voxel(img: nib.Nifti1Image, row: dict[str, str]) -> tuple[int, int, int]:
    ras = np.array([float(row["lesion_ras_x"]), float(row["lesion_ras_y"]), float(row["lesion_ras_z"]), 1.0])
    ijk = np.rint(np.linalg.inv(img.affine) @ ras)[:3].astype(int)
    return tuple(int(v) for v in np.clip(ijk, 0, np.array(img.shape) - 1))


def neighbourhood_max(vol: np.ndarray, ijk: tuple[int, int, int], r: int = 1) -> float:
    sl = tuple(slice(max(c - r, 0), c + r + 1) for c in ijk)
    return float(vol[sl].max())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lung") / "cohort"
    return root, generate_lung(root, small_config())


@pytest.fixture(scope="module")
def ia3_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default-resolution volumes, every patient IA3 (large, solid, hot lesions)."""
    root = tmp_path_factory.mktemp("lung_ia3") / "cohort"
    cfg = LungSynthConfig(n_patients=4, seed=11, subtype_probs=(0, 0, 0, 0, 0, 1), p_pet=1.0, p_rep=1.0)
    generate_lung(root, cfg)
    return root


# -------------------------------------------------------------------------------------------- determinism


def test_same_config_gives_byte_identical_tree(cohort: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = cohort
    again = tmp_path / "again"
    generate_lung(again, small_config())
    first, second = tree_hashes(root), tree_hashes(again)
    assert any(name.endswith(".dcm") for name in first)
    assert any(name.endswith(".nii.gz") for name in first)
    assert first == second


def test_workers_do_not_change_output(tmp_path: Path) -> None:
    cfg = LungSynthConfig(n_patients=6, seed=5, **TINY)
    generate_lung(tmp_path / "one", cfg, workers=1)
    generate_lung(tmp_path / "two", cfg, workers=2)
    assert tree_hashes(tmp_path / "one") == tree_hashes(tmp_path / "two")


def test_different_seed_gives_different_content(cohort: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = cohort
    other = tmp_path / "other"
    generate_lung(other, small_config(seed=8))
    first, second = tree_hashes(root), tree_hashes(other)
    shared = set(first) & set(second)
    volumes = [name for name in shared if name.endswith(("ct.nii.gz", "report.txt"))]
    assert volumes
    assert all(first[name] != second[name] for name in volumes)
    assert first["synth_truth.csv"] != second["synth_truth.csv"]


# ---------------------------------------------------------------------------------- manifest, summary


def test_manifest_columns_paths_and_missingness(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    with open(root / "manifest.csv", encoding="utf-8") as fh:
        assert fh.readline().rstrip("\n") == ",".join(MANIFEST_COLUMNS)
    rows = read_manifest(root)
    assert [r["patient_id"] for r in rows] == [f"LUNG{i:04d}" for i in range(1, 13)]
    missing = 0
    for row in rows:
        assert row["label"] == LEVEL_OF[row["subtype"]]
        assert any(row[m] for m in ("ct", "pet", "rep")), row
        patient_dir = root / "patients" / row["patient_id"]
        for modality, name in (("ct", "ct.nii.gz"), ("pet", "pet.nii.gz"), ("rep", "report.txt")):
            if row[modality]:
                assert not Path(row[modality]).is_absolute()
                assert (root / row[modality]).is_file()
                assert row[modality] == f"patients/{row['patient_id']}/{name}"
            else:
                missing += 1
                assert not (patient_dir / name).exists()
    assert missing > 0


def test_manifest_gives_the_nodule_box_in_patient_mm(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    truth = read_truth(root)
    for row in read_manifest(root):
        if not (row["ct"] or row["pet"]):
            assert row["roi_lps_mm"] == ""
            continue
        box = np.array([float(v) for v in row["roi_lps_mm"].split()])
        t = truth[row["patient_id"]]
        centre_lps = np.array(
            [-float(t["lesion_ras_x"]), -float(t["lesion_ras_y"]), float(t["lesion_ras_z"])]
        )
        np.testing.assert_allclose((box[:3] + box[3:]) / 2, centre_lps, atol=0.1)
        half = (box[3:] - box[:3]) / 2
        assert np.allclose(half, half[0], atol=0.1) and half[0] >= float(t["diameter_mm"]) / 2 - 0.1


def test_latent_views_hold_what_each_modality_was_rendered_from(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    views = latent_views(root)
    rows = read_manifest(root)
    assert set(views) == {"ct", "pet", "rep"}
    for m, view in views.items():
        assert view["sample_id"].to_list() == [r["patient_id"] for r in rows if r[m]], m
        numeric = view.drop("sample_id")
        assert numeric.height and all(dtype.is_float() for dtype in numeric.dtypes), m
        assert not numeric.select(pl.all().is_null().any()).row(0)[0], m
    assert {"diameter_mm", "solid_fraction", "ggo_hu", "lobulation", "vacuole"} == set(
        views["ct"].columns[1:]
    )
    assert set(views["pet"].columns[1:]) == {"suvmax", "diameter_mm"}
    rep = views["rep"]
    assert {"age", "log_cea", "change_growth", "rep_size_mm", "rep_density", "rep_impression"} <= set(
        rep.columns
    )
    # the stated values are those of the text
    truth = read_truth(root)
    for sid, size in zip(rep["sample_id"], rep["rep_size_mm"], strict=True):
        text = (root / "patients" / sid / "report.txt").read_text("utf-8")
        assert f"大小约{int(size)}mm" in text
        assert truth[sid]["rep_impression"] in "0123"


def test_level_mapping() -> None:
    assert SUBTYPES == ("AAH", "AIS", "MIA", "IA1", "IA2", "IA3")
    assert LEVEL_OF == {"AAH": "L1", "AIS": "L1", "MIA": "L2", "IA1": "L2", "IA2": "L3", "IA3": "L3"}


def test_summary_matches_files(cohort: tuple[Path, dict]) -> None:
    root, summary = cohort
    assert json.loads((root / "synth_info.json").read_text("utf-8")) == summary
    rows = read_manifest(root)
    assert summary["generator"] == "omnifuse.synth.lung"
    assert summary["config"]["n_patients"] == 12 and summary["config"]["ct_shape"] == [48, 48, 24]
    assert summary["counts"]["subtype"] == {s: sum(r["subtype"] == s for r in rows) for s in SUBTYPES}
    assert summary["counts"]["label"] == {
        lvl: sum(r["label"] == lvl for r in rows) for lvl in ("L1", "L2", "L3")
    }
    assert summary["modalities"] == {m: sum(bool(r[m]) for r in rows) for m in ("ct", "pet", "rep")}
    assert summary["levels"] == {"L1": ["AAH", "AIS"], "L2": ["MIA", "IA1"], "L3": ["IA2", "IA3"]}


def test_every_patient_keeps_a_modality(tmp_path: Path) -> None:
    cfg = LungSynthConfig(n_patients=12, seed=2, p_ct=0.0, p_pet=0.05, p_rep=0.05, **TINY)
    generate_lung(tmp_path / "sparse", cfg)
    rows = read_manifest(tmp_path / "sparse")
    assert all(r["pet"] or r["rep"] for r in rows)
    assert not any(r["ct"] for r in rows)


def test_manifest_can_point_to_dicom(tmp_path: Path) -> None:
    cfg = LungSynthConfig(n_patients=3, seed=1, p_pet=1.0, dicom=True, manifest_images="dicom", **TINY)
    generate_lung(tmp_path / "dcm", cfg)
    for row in read_manifest(tmp_path / "dcm"):
        assert row["ct"].endswith("ct_dicom") and (tmp_path / "dcm" / row["ct"]).is_dir()
        assert row["pet"].endswith("pet_dicom") and any((tmp_path / "dcm" / row["pet"]).glob("*.dcm"))


# -------------------------------------------------------------------------------------------- images


def test_nifti_headers(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    rows = read_manifest(root)
    cfg = small_config()
    for row in rows:
        for modality, shape, spacing, dtype in (
            ("ct", cfg.ct_shape, cfg.ct_spacing, np.int16),
            ("pet", cfg.pet_shape, cfg.pet_spacing, np.float32),
        ):
            if not row[modality]:
                continue
            img = nib.load(root / row[modality])
            assert img.shape == shape
            assert img.get_data_dtype() == dtype
            np.testing.assert_allclose(img.header.get_zooms(), spacing)
            np.testing.assert_allclose(np.abs(np.diag(img.affine)[:3]), spacing)
            np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), spacing)
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
            centre = img.affine @ np.array([(n - 1) / 2 for n in shape] + [1.0])
            np.testing.assert_allclose(centre[:3], 0.0, atol=1e-6)  # both fields of view share the centre


def test_ct_hounsfield_units_plausible(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    row = next(r for r in read_manifest(root) if r["ct"])
    ct = np.asarray(nib.load(root / row["ct"]).dataobj)
    nx, ny, nz = ct.shape
    assert ct.min() >= -1024 and ct.max() <= 3071
    air = ct[nx // 2 - 2 : nx // 2 + 2, :2, :]  # in front of the chest
    assert -1030 <= np.median(air) <= -960
    assert ct.max() > 250  # bone
    values, counts = np.unique(np.clip(ct, -1000, 200) // 50, return_counts=True)
    assert counts[values == -850 // 50].sum() > 0  # lung parenchyma exists
    body = ct[nx // 2, ny // 2, nz // 4]
    assert -200 < body < 200  # soft tissue / heart at the centre of the lower chest


def test_lesion_brighter_than_lung_and_hot_on_pet(ia3_cohort: Path) -> None:
    truth = read_truth(ia3_cohort)
    for row in read_manifest(ia3_cohort):
        ct_img, pet_img = nib.load(ia3_cohort / row["ct"]), nib.load(ia3_cohort / row["pet"])
        ct, pet = np.asarray(ct_img.dataobj), np.asarray(pet_img.dataobj)
        lung = np.median(ct[(ct > -950) & (ct < -750)])
        lesion_ct = neighbourhood_max(ct, lesion_voxel(ct_img, truth[row["patient_id"]]))
        assert lesion_ct > lung + 150, (row["patient_id"], lesion_ct, lung)  # ground glass -720..-350 HU
        if (
            float(truth[row["patient_id"]]["solid_fraction"]) > 0.8
            and float(truth[row["patient_id"]]["diameter_mm"]) > 12
        ):
            assert lesion_ct > -150, (row["patient_id"], lesion_ct)  # solid core at soft-tissue density
        # lung background on the PET grid: PET voxels whose centre falls in CT lung (checks the shared frame)
        ijk = np.indices(pet.shape).reshape(3, -1)
        world = pet_img.affine @ np.vstack([ijk, np.ones(ijk.shape[1])])
        ct_idx = np.rint(np.linalg.inv(ct_img.affine) @ world)[:3].astype(int)
        ct_at_pet = ct[tuple(np.clip(ct_idx, 0, np.array(ct.shape)[:, None] - 1))]
        pet_lung = np.median(pet.reshape(-1)[(ct_at_pet > -950) & (ct_at_pet < -700)])
        assert 0.3 < pet_lung < 0.8
        lesion_pet = neighbourhood_max(pet, lesion_voxel(pet_img, truth[row["patient_id"]]))
        assert lesion_pet > 2 * pet_lung, (row["patient_id"], lesion_pet, pet_lung)


def test_pet_is_coarser_than_ct() -> None:
    cfg = LungSynthConfig()
    assert all(p > c for p, c in zip(cfg.pet_spacing, cfg.ct_spacing, strict=True))
    assert cfg.ct_shape == (96, 96, 48) and cfg.pet_shape == (48, 48, 24)


# -------------------------------------------------------------------------------------------- reports


def test_reports_length_and_sections(cohort: tuple[Path, dict], ia3_cohort: Path) -> None:
    rows = [(cohort[0], r) for r in read_manifest(cohort[0])] + [
        (ia3_cohort, r) for r in read_manifest(ia3_cohort)
    ]
    texts = [(root / r["rep"]).read_bytes().decode("utf-8") for root, r in rows if r["rep"]]
    assert len(texts) >= 5
    for text in texts:
        assert REPORT_MIN_CHARS <= len(text) <= REPORT_MAX_CHARS
        starts = [line.split("：", 1)[0] for line in text.splitlines()]
        assert starts == list(SECTIONS)
        diagnosis = text.splitlines()[SECTIONS.index("诊断依据")]
        assert re.search(r"大小约\d+mm", diagnosis)
        assert re.search("磨玻璃|部分实性|实性", diagnosis)
        assert re.search("[左右]肺[上中下]叶", diagnosis)
    assert len(set(texts)) == len(texts)


# -------------------------------------------------------------------------------------------- signal


def test_signal_increases_with_level(tmp_path: Path) -> None:
    root = tmp_path / "signal"
    generate_lung(root, LungSynthConfig(n_patients=200, seed=3, p_pet=1.0, p_rep=1.0, **TINY))
    truth = read_truth(root)
    by_level: dict[str, dict[str, list[float]]] = {lvl: {} for lvl in ("L1", "L2", "L3")}
    for row in read_manifest(root):
        t = truth[row["patient_id"]]
        ct_img, pet_img = nib.load(root / row["ct"]), nib.load(root / row["pet"])
        report = (root / row["rep"]).read_text("utf-8")
        stats = by_level[row["label"]]
        stats.setdefault("diameter", []).append(float(t["diameter_mm"]))
        stats.setdefault("suv", []).append(float(t["suvmax"]))
        stats.setdefault("solid", []).append(float(t["solid_fraction"]))
        # image values at the lesion voxel (partial volume makes them rise with size, solidity and uptake)
        stats.setdefault("ct_image", []).append(float(np.asarray(ct_img.dataobj)[lesion_voxel(ct_img, t)]))
        stats.setdefault("pet_image", []).append(float(np.asarray(pet_img.dataobj)[lesion_voxel(pet_img, t)]))
        stats.setdefault("reported_size", []).append(float(re.search(r"大小约(\d+)mm", report).group(1)))
    for key in ("diameter", "suv", "solid", "ct_image", "pet_image", "reported_size"):
        means = [np.mean(by_level[lvl][key]) for lvl in ("L1", "L2", "L3")]
        assert means[0] < means[1] < means[2], (key, means)
    # imperfect: the levels overlap
    assert max(by_level["L1"]["diameter"]) > min(by_level["L2"]["diameter"])
    assert max(by_level["L2"]["suv"]) > min(by_level["L3"]["suv"])


# -------------------------------------------------------------------------------------------- DICOM


def read_series(folder: Path) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    slices = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    vol = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])
    return vol.transpose(2, 1, 0), slices  # (slice, row, col) -> (i, j, k)


def test_dicom_series_round_trip(cohort: tuple[Path, dict]) -> None:
    root, _ = cohort
    rows = [r for r in read_manifest(root) if r["ct"] and r["pet"]]
    assert rows
    cfg = small_config()
    today = dt.date.today().strftime("%Y%m%d")
    for row in rows[:3]:
        patient_dir = root / "patients" / row["patient_id"]
        ct_img, pet_img = nib.load(root / row["ct"]), nib.load(root / row["pet"])
        ct_vol, ct_slices = read_series(patient_dir / "ct_dicom")
        pet_vol, pet_slices = read_series(patient_dir / "pet_dicom")
        assert len(ct_slices) == cfg.ct_shape[2] and len(pet_slices) == cfg.pet_shape[2]
        assert np.abs(ct_vol - np.asarray(ct_img.dataobj)).max() <= 1.0
        pet = np.asarray(pet_img.dataobj)
        assert np.abs(pet_vol - pet).max() <= 1e-3 * max(1.0, float(pet.max()))
        first_ct, first_pet = ct_slices[0], pet_slices[0]
        assert first_ct.Modality == "CT" and first_pet.Modality == "PT" and first_pet.Units == "GML"
        assert first_ct.RescaleType == "HU"
        assert [float(v) for v in first_ct.PixelSpacing] == [cfg.ct_spacing[1], cfg.ct_spacing[0]]
        assert float(first_ct.SliceThickness) == cfg.ct_spacing[2]
        assert [float(v) for v in first_ct.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        np.testing.assert_allclose(
            [float(v) for v in first_ct.ImagePositionPatient], -ct_img.affine[:3, 3] * [1, 1, -1]
        )
        assert len({ds.SeriesInstanceUID for ds in ct_slices}) == 1
        assert first_ct.SeriesInstanceUID != first_pet.SeriesInstanceUID
        assert first_ct.FrameOfReferenceUID == first_pet.FrameOfReferenceUID
        assert first_ct.StudyInstanceUID == first_pet.StudyInstanceUID
        assert len({ds.SOPInstanceUID for ds in ct_slices + pet_slices}) == len(ct_slices) + len(pet_slices)
        assert sorted(int(ds.InstanceNumber) for ds in ct_slices) == list(range(1, len(ct_slices) + 1))
        assert first_ct.PatientID == row["patient_id"]
        assert today not in {first_ct.StudyDate, first_ct.ContentDate, first_pet.StudyDate}


# -------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"seed": -1}, "seed"),
        ({"p_pet": 1.5}, "p_pet"),
        ({"rep_noise": -0.1}, "rep_noise"),
        ({"ct_signal": 2.0}, "ct_signal"),
        ({"p_ct": 0.0, "p_pet": 0.0, "p_rep": 0.0}, "p_ct"),
        ({"subtype_probs": (0.5, 0.5)}, "subtype_probs"),
        ({"subtype_probs": (0, 0, 0, 0, 0, 0)}, "subtype_probs"),
        ({"ct_shape": (8, 8, 8)}, "ct_shape"),
        ({"pet_spacing": (7.0, 0.0, 10.0)}, "pet_spacing"),
        ({"ct_noise_hu": float("nan")}, "ct_noise_hu"),
        ({"dicom": "yes"}, "dicom"),
        ({"manifest_images": "dicom"}, "manifest_images"),
        ({"manifest_images": "png"}, "manifest_images"),
    ],
)
def test_invalid_option_names_it(options: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LungSynthConfig(**options)


def test_invalid_workers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        generate_lung(tmp_path / "x", LungSynthConfig(n_patients=1, **TINY), workers=0)
    assert not (tmp_path / "x").exists()


def test_lists_are_accepted_and_normalised() -> None:
    cfg = LungSynthConfig(ct_shape=[96, 96, 48], subtype_probs=[1, 1, 1, 1, 1, 1], p_ct=1)
    assert cfg.ct_shape == (96, 96, 48) and cfg.subtype_probs == (1.0,) * 6 and isinstance(cfg.p_ct, float)
    assert cfg == LungSynthConfig(subtype_probs=(1.0,) * 6)


def test_existing_directory_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    cfg = LungSynthConfig(n_patients=2, seed=1, **TINY)
    with pytest.raises(FileExistsError):
        generate_lung(out, cfg)
    assert (out / "keep.txt").exists() and not (out / "manifest.csv").exists()
    generate_lung(out, cfg, overwrite=True)
    assert (out / "manifest.csv").exists() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary directories left behind
