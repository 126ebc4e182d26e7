"""What a synthetic chest X-ray study shows: the contract between the hospital generator (which
decides the findings from each stay's latent state), the image renderer and the report writer."""

from __future__ import annotations

from dataclasses import dataclass

SIDES = ("left", "right", "bilateral")
DEVICES = ("ett", "ng_tube", "central_line", "pacemaker", "sternal_wires")
VIEWS = ("AP", "PA", "LATERAL")
# The graded findings (severity in [0, 1], 0 = absent), in the order reports and latent views list them.
SEVERITY_FIELDS = (
    "opacity",
    "effusion",
    "edema",
    "cardiomegaly",
    "atelectasis",
    "pneumothorax",
    "diffuse",
    "hyperinflation",
)


@dataclass(frozen=True)
class CxrFindings:
    """Severity of each finding in [0, 1] (0 = absent) plus laterality and support devices."""

    opacity: float = 0.0  # airspace opacity / consolidation (pneumonia)
    opacity_side: str = "right"
    effusion: float = 0.0  # pleural effusion
    effusion_side: str = "bilateral"
    edema: float = 0.0  # pulmonary (interstitial/alveolar) edema
    cardiomegaly: float = 0.0  # 0 = normal heart size
    atelectasis: float = 0.0  # basilar atelectasis
    pneumothorax: float = 0.0
    pneumothorax_side: str = "right"
    diffuse: float = 0.0  # diffuse bilateral airspace opacity (lung injury, ARDS pattern): extent
    hyperinflation: float = 0.0  # hyperexpanded lungs, flattened hemidiaphragms (COPD, emphysema)
    habitus: float = 0.0  # body habitus: soft-tissue excess (0 = normal build, 1 = morbid obesity)
    devices: tuple[str, ...] = ()  # subset of DEVICES, in DEVICES order

    def __post_init__(self) -> None:
        for name in (*SEVERITY_FIELDS, "habitus"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CxrFindings.{name} must be in [0, 1], got {value}")
        for name in ("opacity_side", "effusion_side", "pneumothorax_side"):
            if getattr(self, name) not in SIDES:
                raise ValueError(f"CxrFindings.{name} must be one of {SIDES}, got {getattr(self, name)!r}")
        unknown = set(self.devices) - set(DEVICES)
        if unknown:
            raise ValueError(f"unknown devices {sorted(unknown)}; expected a subset of {DEVICES}")

    @property
    def is_normal(self) -> bool:
        """True when no finding is present (devices and body habitus do not count as abnormal)."""
        return max(getattr(self, name) for name in SEVERITY_FIELDS) == 0.0
