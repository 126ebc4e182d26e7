"""Options of the EHR stage (config section ``ehr``; each field is also a CLI flag)."""

from __future__ import annotations

from dataclasses import dataclass

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class EventOptions:
    """How raw events become clean variable values (``omnifuse ehr extract``)."""

    # map the MIMIC-IV capillary refill items 223951/224308 ("Normal <3 Seconds" / "Abnormal >3 Seconds")
    # to the reference categories "0.0" / "1.0"; the mimic3-benchmarks map has only MIMIC-III items, so
    # without this the channel is never observed on MIMIC-IV
    capillary_refill_text: bool = True
    drop_outliers: bool = True  # drop values outside the physiologically possible range (counted)

    def __post_init__(self) -> None:
        for name in ("capillary_refill_text", "drop_outliers"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false")


@dataclass(frozen=True)
class DiscretizerOptions:
    """How a stay's events become the (steps, 76) time series (``omnifuse ehr features``)."""

    timestep: float = 2.0  # hours per time step (MedFuse: 1.0); IHM has 48 / timestep steps
    max_hours: float = 240.0  # cap on the window (phenotyping: longer stays keep their first max_hours)
    dtype: str = "float32"  # cache precision: float32 or float16

    def __post_init__(self) -> None:
        if not self.timestep > 0:
            raise ValueError(f"timestep must be > 0 hours, got {self.timestep}")
        if not self.max_hours >= self.timestep:
            raise ValueError(f"max_hours must be >= timestep, got {self.max_hours}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
