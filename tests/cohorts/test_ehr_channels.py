"""The 76 channel definitions and the item map against the mimic3-benchmarks reference files."""

from __future__ import annotations

import json

import polars as pl

from omnifuse.cohorts.ehr.channels import CRR_MIMIC_IV_ITEMS, channel_spec, item_table, items
from omnifuse.synth import mimic_items
from tests.helpers import shared_data

SPEC = channel_spec()


def reference(name: str):
    return shared_data("mimic3-benchmarks-resources", name)


def test_channels_match_discretizer_config():
    config = json.loads(reference("discretizer_config.json").read_text())
    assert list(SPEC.names) == config["id_to_channel"]
    for v in SPEC.variables:
        assert v.categorical == config["is_categorical_channel"][v.name], v.name
        assert list(v.categories) == config["possible_values"][v.name], v.name
        expected = config["normal_values"][v.name]
        if v.categorical:
            assert v.normal == expected
        else:
            assert float(v.normal) == float(expected), v.name
    # the 76 column names as the reference Discretizer builds its header
    header = []
    for name in config["id_to_channel"]:
        values = config["possible_values"][name]
        header += [f"{name}->{x}" for x in values] if config["is_categorical_channel"][name] else [name]
    header += [f"mask->{name}" for name in config["id_to_channel"]]
    assert SPEC.column_names() == header and len(header) == 76


def test_ordinal_values_match_channel_info():
    info = json.loads(reference("channel_info.json").read_text())
    for v in SPEC.variables:
        if v.categorical:
            assert dict(zip(v.categories, v.ordinal, strict=True)) == info[v.name]["values"], v.name


def test_impossible_value_ranges_match_variable_ranges():
    ranges = pl.read_csv(reference("variable_ranges.csv"), infer_schema=False)
    by_name = {r["LEVEL2"].lower(): r for r in ranges.iter_rows(named=True)}
    for v in SPEC.variables:
        if v.categorical:
            continue
        row = by_name[v.name.lower()]
        assert (v.outlier_low, v.outlier_high) == (float(row["OUTLIER LOW"]), float(row["OUTLIER HIGH"])), (
            v.name
        )


def test_items_are_the_ready_mimic_iv_and_lab_items_of_the_reference_map():
    ref = pl.read_csv(reference("itemid_to_variable_map.csv"), infer_schema=False)
    ref = ref.filter(pl.col("LEVEL2").is_in(list(SPEC.names)) & (pl.col("STATUS") == "ready"))
    ref = ref.with_columns(pl.col("ITEMID").cast(pl.Int64))
    ref = ref.filter((pl.col("ITEMID") >= 220000) | (pl.col("LINKSTO") == "labevents"))
    expected = {(r["ITEMID"], r["LEVEL2"], r["LINKSTO"]) for r in ref.iter_rows(named=True)}
    ours = {(it.itemid, it.variable, it.table) for it in items() if it.source == "mimic3-benchmarks"}
    assert ours == expected
    extra = {it.itemid for it in items() if it.source != "mimic3-benchmarks"}
    assert extra == set(CRR_MIMIC_IV_ITEMS)  # our addition: MIMIC-IV capillary refill
    assert not extra & set(ref["ITEMID"].to_list())


def test_item_map_covers_the_synthetic_hospital_and_the_switch():
    table = item_table()
    for item in mimic_items.ITEMS:
        if item.variable is None:
            assert item.itemid not in table
        else:
            assert table[item.itemid].variable == item.variable, item.itemid
    assert set(CRR_MIMIC_IV_ITEMS).isdisjoint(item_table(capillary_refill_text=False))
    # unit conversions are driven by the item's unit
    assert {table[i].unit for i in (223761, 226531, 226707)} == {"degF", "lb", "inch"}


def test_numeric_categories_are_the_mimic_iv_strings():
    for value, text in mimic_items.GCS_EYE_VALUES.items():
        assert SPEC.numeric_categories["Glascow coma scale eye opening"][value] == text
    for value, text in mimic_items.GCS_MOTOR_VALUES.items():
        assert SPEC.numeric_categories["Glascow coma scale motor response"][value] == text
    for value, text in mimic_items.GCS_VERBAL_VALUES.items():
        assert SPEC.numeric_categories["Glascow coma scale verbal response"][value] == text
    assert set(SPEC.crr_text_mimic_iv) == set(mimic_items.CAPILLARY_REFILL_VALUES.values())
