"""The 17 EHR variables, their 76 discretized columns and the MIMIC-IV items that feed them.

Facts live in two resource files (the project's own format; tests compare them with the
mimic3-benchmarks reference files):

* ``omnifuse/resources/ehr_channels.yaml``: variables in channel order, continuous or categorical,
  category strings in one-hot order, normal values, impossible-value ranges;
* ``omnifuse/resources/ehr_items.csv``: MIMIC-IV item id -> variable, source table and charted unit.

Column layout (mimic3-benchmarks ``Discretizer`` with ``store_masks``): for each variable in channel
order one column (continuous) or one column per category string (categorical, one-hot), then one mask
column per variable: 47 one-hot + 12 continuous + 17 masks = 76 columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

CHANNELS_FILE = "ehr_channels.yaml"
ITEMS_FILE = "ehr_items.csv"
CRR = "Capillary refill rate"
CRR_MIMIC_IV_ITEMS = (223951, 224308)


@dataclass(frozen=True)
class Variable:
    index: int  # channel id 0..16
    name: str
    categorical: bool
    normal: str  # normal value as text (a category string for categorical variables)
    categories: tuple[str, ...] = ()  # one-hot order
    ordinal: tuple[int, ...] = ()  # ordinal value of each category (channel_info.json)
    outlier_low: float | None = None
    outlier_high: float | None = None
    begin: int = 0  # first column of this variable in the 76-column layout
    width: int = 1

    @property
    def normal_code(self) -> float:
        """The normal value in the events' ``value`` encoding: category index or the number."""
        return float(self.categories.index(self.normal)) if self.categorical else float(self.normal)


@dataclass(frozen=True)
class Item:
    itemid: int
    variable: str
    table: str  # chartevents | labevents
    label: str
    unit: str  # canonical unit of valuenum: degF, degC, lb, kg, inch, cm, %, ...
    source: str  # "mimic3-benchmarks" (their map, STATUS ready) or "omnifuse" (our addition)


@dataclass(frozen=True)
class ChannelSpec:
    """The whole channel definition (see the module docstring)."""

    variables: tuple[Variable, ...]
    numeric_categories: dict[str, dict[int, str]] = field(default_factory=dict)
    crr_text_reference: dict[str, str] = field(default_factory=dict)
    crr_text_mimic_iv: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def __getitem__(self, name: str) -> Variable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"unknown EHR variable {name!r}")

    @property
    def n_columns(self) -> int:
        return self.variables[-1].begin + self.variables[-1].width + len(self.variables)

    @property
    def mask_begin(self) -> int:
        return self.variables[-1].begin + self.variables[-1].width

    def column_names(self) -> list[str]:
        """The 76 column names as the reference writes them (``channel->value``, ``mask->channel``)."""
        out: list[str] = []
        for v in self.variables:
            out.extend([f"{v.name}->{c}" for c in v.categories] if v.categorical else [v.name])
        return out + [f"mask->{v.name}" for v in self.variables]

    def continuous_columns(self) -> list[int]:
        """Columns of the 12 continuous variables (the ones a trainer z-scores)."""
        return [v.begin for v in self.variables if not v.categorical]

    def to_json_dict(self) -> dict:
        """What the cache records about its columns (preprocessing attribute)."""
        return {
            "channels": list(self.names),
            "columns": self.column_names(),
            "continuous_columns": self.continuous_columns(),
            "normal_values": {v.name: v.normal for v in self.variables},
        }


def _read_resource(name: str) -> str:
    return resources.files("omnifuse.resources").joinpath(name).read_text(encoding="utf-8")


@cache
def channel_spec() -> ChannelSpec:
    """The 17 variables and 76 columns from ``ehr_channels.yaml``."""
    raw = yaml.safe_load(_read_resource(CHANNELS_FILE))
    variables, begin = [], 0
    for i, entry in enumerate(raw["variables"]):
        categorical = entry["kind"] == "categorical"
        cats = tuple(str(c) for c in entry.get("categories", {}))
        ordinal = tuple(int(x) for x in entry.get("categories", {}).values())
        low, high = entry.get("range", (None, None))
        width = len(cats) if categorical else 1
        normal = str(entry["normal"])
        if categorical and normal not in cats:
            raise ValueError(f"{CHANNELS_FILE}: normal value {normal!r} of {entry['name']!r} is no category")
        variables.append(
            Variable(i, entry["name"], categorical, normal, cats, ordinal, low, high, begin, width)
        )
        begin += width
    numeric = {
        name: {int(k): str(v) for k, v in mapping.items()}
        for name, mapping in raw["numeric_categories"].items()
    }
    spec = ChannelSpec(
        tuple(variables),
        numeric,
        dict(raw["capillary_refill_text"]["reference"]),
        dict(raw["capillary_refill_text"]["mimic_iv"]),
    )
    for name, mapping in numeric.items():
        unknown = set(mapping.values()) - set(spec[name].categories)
        if unknown:
            raise ValueError(f"{CHANNELS_FILE}: numeric categories of {name!r} are no categories: {unknown}")
    return spec


@cache
def items() -> tuple[Item, ...]:
    """The MIMIC-IV items of the 17 variables (``ehr_items.csv``)."""
    rows = list(csv.DictReader(_read_resource(ITEMS_FILE).splitlines()))
    names = set(channel_spec().names)
    out = []
    for row in rows:
        if row["variable"] not in names:
            raise ValueError(
                f"{ITEMS_FILE}: item {row['itemid']} maps to unknown variable {row['variable']!r}"
            )
        out.append(
            Item(int(row["itemid"]), row["variable"], row["table"], row["label"], row["unit"], row["source"])
        )
    return tuple(out)


def item_table(capillary_refill_text: bool = True) -> dict[int, Item]:
    """Item id -> item; without ``capillary_refill_text`` the MIMIC-IV capillary refill items are left out."""
    return {it.itemid: it for it in items() if capillary_refill_text or it.itemid not in CRR_MIMIC_IV_ITEMS}
