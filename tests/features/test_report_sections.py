"""FINDINGS extraction from MIMIC-CXR-style reports: the layouts and accidents of real report files.

Each case is written the way the real files are (a FINAL REPORT banner, lines starting with one space,
single-space blank lines, two spaces after the colon, hard-wrapped paragraphs)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from omnifuse.features.report_sections import (
    canonical_name,
    extract_diagnosis,
    extract_findings,
    report_text,
    split_sections,
    split_zh_sections,
    whole_report,
)
from omnifuse.synth.cxr_findings import CxrFindings
from omnifuse.synth.cxr_report import write_report
from omnifuse.synth.lung import LungSynthConfig, sample_patient
from omnifuse.synth.lung import _report as lung_report

BANNER = " " * 33 + "FINAL REPORT"


def mimic(*lines: str) -> str:
    """A report in the MIMIC-CXR file layout (banner, one leading space per line)."""
    return "\n".join([BANNER, *(" " + line if line else " " for line in lines)]) + "\n"


HEADER = (
    "EXAMINATION:  CHEST (PORTABLE AP)",
    "",
    "INDICATION:  ___-year-old man with hypoxia  // eval for pneumonia",
    "",
    "TECHNIQUE:  Portable AP chest radiograph.",
    "",
    "COMPARISON:  ___",
    "",
)
BODY = "Small left pleural effusion. No pneumothorax. Heart size is normal."
IMPRESSION = "Small left pleural effusion."


def findings(text: str, fallback: str = "none") -> str | None:
    return extract_findings(text, fallback).text


def test_standard_report_gives_the_findings_paragraph_only():
    text = mimic(*HEADER, "FINDINGS: ", "", "Small left pleural effusion. No pneumothorax.", "Heart size is",
                 "normal.", "", "IMPRESSION: ", "", IMPRESSION)  # fmt: skip
    result = extract_findings(text)
    assert result.text == BODY
    assert (result.status, result.source) == ("ok", "findings")


@pytest.mark.parametrize(
    "heading",
    ["FINDINGS:", "FINDINGS: ", "Findings:", "findings:", "FINDINGS :", "  FINDINGS:", "FINDINGS:\t",
     "Findings :  ", "FINDING:", "FINDNGS:", "FINIDNGS:"],
)  # fmt: skip
def test_heading_case_spacing_and_misspellings(heading):
    text = mimic(*HEADER, heading, "", BODY, "", "IMPRESSION:", "", IMPRESSION)
    assert findings(text) == BODY


def test_text_on_the_heading_line_and_heading_without_colon():
    assert findings(mimic(*HEADER, f"FINDINGS:  {BODY}", "", f"IMPRESSION:  {IMPRESSION}")) == BODY
    assert findings(mimic(*HEADER, "FINDINGS", "", BODY, "", "IMPRESSION", "", IMPRESSION)) == BODY
    assert findings(mimic(*HEADER, "Findings", BODY, "Impression", IMPRESSION)) == BODY


@pytest.mark.parametrize(
    "heading",
    ["FINDINGS AND IMPRESSION:", "Findings and impression:", "FINDINGS/IMPRESSION:",
     "FINDINGS / IMPRESSION:", "IMPRESSION AND FINDINGS:", "FINDINGS AND IMPRESSION :"],
)  # fmt: skip
def test_combined_findings_and_impression(heading):
    text = mimic(*HEADER, heading, "", BODY, "No acute cardiopulmonary process.")
    assert findings(text) == BODY + " No acute cardiopulmonary process."


def test_sections_in_any_order():
    text = mimic("IMPRESSION: ", "", IMPRESSION, "", *HEADER, "FINDINGS:", "", BODY, "",
                 "COMPARISON: None.")  # fmt: skip
    assert findings(text) == BODY
    swapped = mimic("EXAMINATION:  CHEST", "", "IMPRESSION:", IMPRESSION, "", "FINDINGS:", BODY, "",
                    "INDICATION: ___ with cough", "", "TECHNIQUE: AP")  # fmt: skip
    assert findings(swapped) == BODY


def test_trailing_whitespace_crlf_tabs_and_nbsp():
    text = mimic(*HEADER, "FINDINGS:   ", "   ", "Small left pleural effusion.   ", "No pneumothorax.\t",
                 "Heart size is\u00a0normal.   ", "  ", "IMPRESSION:  ", IMPRESSION + "   ")  # fmt: skip
    assert findings(text) == BODY
    assert findings(text.replace("\n", "\r\n")) == BODY
    assert findings("\ufeff" + text) == BODY


def test_wet_read_block_and_provisional_read_are_not_findings():
    wet = (
        " WET READ: ___ ___ ___ 2:25 PM\n"
        "  Findings: Large right effusion.  Possible pneumonia.\n"
        " ______________________________________________________________________________\n"
    )
    text = wet + mimic(*HEADER, "FINDINGS:", "", BODY, "", "IMPRESSION:", "", IMPRESSION)
    assert findings(text) == BODY
    version = " WET READ VERSION #1 ___ 10:42 PM\n  Right effusion.\n " + "_" * 78 + "\n"
    assert findings(version + mimic(*HEADER, "FINDINGS:", BODY)) == BODY
    pfi = mimic(*HEADER, "PROVISIONAL FINDINGS IMPRESSION (PFI): ___ ___ 9:15 PM", "Right effusion.",
                "", "IMPRESSION:", IMPRESSION)  # fmt: skip
    result = extract_findings(pfi)
    assert result.text is None and result.reason == "no FINDINGS section"


def test_view_heading_stands_in_for_a_missing_findings_section():
    text = mimic("EXAMINATION:  CHEST (PA AND LAT)", "", "INDICATION:  cough", "",
                 "PA AND LATERAL VIEWS OF THE CHEST:", "", BODY, "", "IMPRESSION:", IMPRESSION)  # fmt: skip
    result = extract_findings(text)
    assert result.text == BODY and result.source == "view heading"
    for heading in ("CHEST, TWO VIEWS:", "PORTABLE AP CHEST:", "FRONTAL AND LATERAL VIEWS OF THE CHEST:",
                    "CHEST, PA AND LATERAL:", "PORTABLE SEMI-UPRIGHT RADIOGRAPH OF THE CHEST:"):  # fmt: skip
        assert findings(mimic("INDICATION: cough", "", heading, BODY, "", "IMPRESSION:", IMPRESSION)) == BODY


def test_title_line_before_the_header_does_not_compete_with_findings():
    # p10/p10103318/s57408307-style: a report title that looks like a section
    text = mimic("CHEST, PA LATERAL:", "", "INDICATION:  ___ with cough", "", "FINDINGS:", BODY, "",
                 "IMPRESSION:", IMPRESSION)  # fmt: skip
    assert findings(text) == BODY
    titled = mimic("PORTABLE CHEST, ___", "", "CHEST (PORTABLE AP):  ___", "", "FINDINGS:", BODY)
    assert findings(titled) == BODY


def test_no_findings_section_is_missing_unless_falling_back_to_impression():
    text = mimic(*HEADER, "IMPRESSION: ", "", IMPRESSION)
    result = extract_findings(text)
    assert (result.text, result.status, result.reason) == (None, "missing", "no FINDINGS section")
    back = extract_findings(text, fallback="impression")
    assert (back.text, back.status, back.source) == (IMPRESSION, "ok", "impression")
    assert "IMPRESSION used instead" in back.reason
    conclusion = mimic(*HEADER, "CONCLUSION:", IMPRESSION)
    assert findings(conclusion, "impression") == IMPRESSION
    nothing = extract_findings(mimic(*HEADER), fallback="impression")
    assert nothing.text is None and nothing.reason == "no FINDINGS section and no IMPRESSION"
    with pytest.raises(ValueError, match="fallback"):
        extract_findings(text, fallback="last_paragraph")


def test_empty_findings_and_pointers_to_the_impression():
    empty = mimic(*HEADER, "FINDINGS: ", "", "IMPRESSION: ", "", IMPRESSION)
    assert extract_findings(empty).reason == "FINDINGS section is empty"
    assert findings(empty, "impression") == IMPRESSION
    deid = mimic(*HEADER, "FINDINGS:  ___", "", "IMPRESSION:", IMPRESSION)
    assert extract_findings(deid).reason == "FINDINGS section is empty"
    pointers = ("See impression.", "See impression below.", "As above.", "Please refer to the impression.",
                "See IMPRESSION", "Refer to impression section.")  # fmt: skip
    for pointer in pointers:
        text = mimic(*HEADER, "FINDINGS:", pointer, "", "IMPRESSION:", IMPRESSION)
        result = extract_findings(text)
        assert result.text is None and "refers elsewhere" in result.reason, pointer
        assert findings(text, "impression") == IMPRESSION
    # a real finding that happens to mention the impression is kept
    real = mimic(*HEADER, "FINDINGS:", "Small effusion, see impression for follow-up.", "IMPRESSION:", "x y")
    assert findings(real) == "Small effusion, see impression for follow-up."


def test_empty_report_is_a_bad_input():
    for text in ("", "   \n \n", " \r\n"):
        result = extract_findings(text)
        assert (result.text, result.status, result.reason) == (None, "bad", "empty report")


def test_repeated_findings_sections_are_joined_in_order():
    text = mimic(*HEADER, "FINDINGS:", "Frontal view: small left effusion.", "", "IMPRESSION:", IMPRESSION,
                 "", "FINDINGS:", "Lateral view: no pneumothorax.")  # fmt: skip
    assert findings(text) == "Frontal view: small left effusion. Lateral view: no pneumothorax."


def test_capitalised_subheadings_stay_inside_findings():
    text = mimic(*HEADER, "FINDINGS:", "", "LUNGS: Clear.", "HEART: Normal size.", "BONES: No fracture.",
                 "LINES/TUBES: ET tube 4 cm above the carina.", "", "IMPRESSION:", IMPRESSION)  # fmt: skip
    assert findings(text) == (
        "LUNGS: Clear. HEART: Normal size. BONES: No fracture. LINES/TUBES: ET tube 4 cm above the carina."
    )


def test_sections_after_findings_end_it():
    for name in ("ADDENDUM", "NOTIFICATION", "RECOMMENDATION(S)", "RECOMMENDATIONS", "IMPRESSION",
                 "COMPARISON", "CLINICAL HISTORY", "REASON FOR EXAMINATION"):  # fmt: skip
        text = mimic(*HEADER, "FINDINGS:", BODY, "", f"{name}:  Something else entirely.")
        assert findings(text) == BODY, name
    addendum = " " * 33 + "FINAL ADDENDUM\n ADDENDUM:  Wrong side.\n \n" + mimic(*HEADER, "FINDINGS:", BODY)
    assert findings(addendum) == BODY


def test_colons_in_times_and_sentences_do_not_split():
    body = ("Findings were discussed with Dr. ___ at 10:30 AM on ___. Of note: the left costophrenic "
            "angle is excluded. Ratio 1:2.")  # fmt: skip
    text = mimic(*HEADER, "FINDINGS:", body, "", "IMPRESSION:", "My impression: nothing new.")
    assert findings(text) == body
    lower = mimic(*HEADER, "FINDINGS:", "The impression: from the prior study is unchanged.")
    assert findings(lower) == "The impression: from the prior study is unchanged."


def test_reports_that_lost_their_line_breaks():
    flat = (f"FINAL REPORT EXAMINATION: CHEST (PA AND LAT) INDICATION: cough. COMPARISON: ___. "
            f"FINDINGS: {BODY} IMPRESSION: {IMPRESSION}")  # fmt: skip
    assert findings(flat) == BODY
    assert findings(f"FINDINGS: {BODY} IMPRESSION: {IMPRESSION}") == BODY


def test_all_capitals_report_and_numbered_findings():
    text = mimic("EXAMINATION: CHEST", "FINDINGS:", "1. SMALL LEFT EFFUSION.", "2. NO PNEUMOTHORAX.",
                 "", "IMPRESSION:", "SMALL LEFT EFFUSION.")  # fmt: skip
    assert findings(text) == "1. SMALL LEFT EFFUSION. 2. NO PNEUMOTHORAX."


def test_separator_lines_inside_a_section_are_removed():
    text = mimic(*HEADER, "FINDINGS:", BODY, "", "IMPRESSION:", IMPRESSION) + " " + "_" * 78 + "\n"
    assert findings(text) == BODY
    sections = split_sections(text)
    assert [s.name for s in sections][:3] == ["banner", "examination", "indication"]


def test_unstructured_report_has_no_findings():
    text = "PA and lateral chest radiograph. The lungs are clear. No effusion."
    assert extract_findings(text).reason == "no FINDINGS section"
    assert [s.name for s in split_sections(text)] == ["preamble"]


def test_canonical_names():
    assert canonical_name("FINDINGS AND IMPRESSION") == "findings"
    assert canonical_name("Impresson") == "impression"
    assert canonical_name("PROVISIONAL FINDINGS IMPRESSION (PFI)") == "provisional"
    assert canonical_name("REASON FOR EXAM") == "indication"
    assert canonical_name("PA AND LATERAL VIEWS OF THE CHEST") == "view"
    assert canonical_name("LUNGS") == "other"
    assert canonical_name("There is no effusion") is None  # a sentence, not a heading


def test_whole_report_for_chinese_text():
    text = "个人史：生于江苏省。\n既往史：否认高血压。  \r\n诊断依据：右肺上叶结节，大小约12mm×10mm。\n"
    result = whole_report(text)
    assert (
        result.text == "个人史：生于江苏省。 既往史：否认高血压。 诊断依据：右肺上叶结节，大小约12mm×10mm。"
    )
    assert report_text(text, "whole").text == result.text
    assert whole_report(" \n").status == "bad"
    with pytest.raises(ValueError, match="section"):
        report_text(text, "impression")


def synthetic(seed: int, prob: float) -> tuple[CxrFindings, str]:
    rng = np.random.default_rng(seed)
    f = CxrFindings(
        effusion=float(rng.choice([0, 0.3, 0.8])), opacity=float(rng.choice([0, 0.6])),
        cardiomegaly=float(rng.choice([0, 0.5])), devices=("ett",) if seed % 3 == 0 else (),
    )  # fmt: skip
    text = write_report(f, views=(("AP",), ("PA", "LATERAL"))[seed % 2], age=70, gender="MF"[seed % 2],
                        indication="hypoxia", has_prior=bool(seed % 2), rng=rng,
                        no_findings_section_prob=prob)  # fmt: skip
    return f, text


def test_synthetic_reports_findings_carry_the_description_and_nothing_else():
    for seed in range(300):
        f, text = synthetic(seed, prob=0.0)
        result = extract_findings(text)
        assert result.status == "ok", text
        assert not re.search(r"INDICATION|EXAMINATION|TECHNIQUE|COMPARISON|IMPRESSION|WET READ|NOTIFICATION"
                             r"|FINAL REPORT|___|year.old|//", result.text), text  # fmt: skip
        if f.effusion:
            assert "effusion" in result.text and not re.search(r"\bno (pleural )?effusion", result.text)
        if "ett" in f.devices:
            assert re.search(r"endotracheal|ET tube", result.text, re.IGNORECASE)


def test_synthetic_reports_without_findings_are_missing_or_fall_back():
    for seed in range(100):
        _, text = synthetic(seed, prob=1.0)
        assert extract_findings(text).status == "missing", text
        back = extract_findings(text, fallback="impression")
        assert back.status == "ok" and back.source == "impression", text
    rate = np.mean(
        [extract_findings(synthetic(seed, prob=0.1)[1]).status == "missing" for seed in range(400)]
    )
    assert 0.06 <= rate <= 0.14


# ------------------------------------------------------------------------------------------------------
# Chinese clinical reports: the diagnostic sections
# ------------------------------------------------------------------------------------------------------

ZH = (
    "个人史：生于江苏省。家族史：父亲患肺癌。\n"
    "体格检查：双肺呼吸音清。\n"
    "诊断依据：1. 患者男性，62岁。2. 胸部CT示：右肺上叶见一磨玻璃结节，大小约12mm×10mm。"
    "3. 肿瘤标志物：CEA 2.1ng/mL。\n"
    "手术指征：结节持续存在，有手术指征。\n"
)


def test_chinese_diagnostic_basis_is_selected():
    result = extract_diagnosis(ZH)
    assert result.status == "ok" and result.source == "diagnosis"
    assert result.text.startswith("1. 患者男性，62岁。") and result.text.endswith("CEA 2.1ng/mL。")
    assert "胸部CT示：右肺上叶" in result.text  # an unknown name with a colon is text, not a heading
    assert "手术指征" not in result.text and "生于" not in result.text
    assert report_text(ZH, "diagnosis").text == result.text


@pytest.mark.parametrize(
    "heading",
    ["诊断依据：", "诊断依据:", "诊断依据 ：", "  诊 断 依 据：", "【诊断依据】", "【 诊断依据 】：",
     "五、诊断依据：", "5. 诊断依据:", "（五）诊断依据：", "\u3000诊断依据："],
)  # fmt: skip
def test_chinese_heading_variants(heading):
    text = ZH.replace("诊断依据：", heading)
    assert extract_diagnosis(text).text == extract_diagnosis(ZH).text, heading


def test_chinese_similar_headings_are_joined_in_order_and_others_end_them():
    text = (
        "主诉：体检发现肺结节1月。\n辅助检查：胸部CT示右肺上叶结节。\n鉴别诊断：需与结核球鉴别。\n"
        "【初步诊断】右肺上叶结节\n【签名】医师甲\n影像所见：右肺上叶磨玻璃影。诊断：原位腺癌可能。"
    )
    sections = split_zh_sections(text)
    assert [(s.name, s.heading) for s in sections] == [
        ("other", "主诉"), ("diagnosis", "辅助检查"), ("other", "鉴别诊断"), ("diagnosis", "初步诊断"),
        ("other", "签名"), ("diagnosis", "影像所见"), ("diagnosis", "诊断"),
    ]  # fmt: skip
    assert (
        extract_diagnosis(text).text
        == "胸部CT示右肺上叶结节。 右肺上叶结节 右肺上叶磨玻璃影。 原位腺癌可能。"
    )
    # a report whose line breaks were lost: known names after a sentence end still split it
    flat = ZH.replace("\n", "")
    assert extract_diagnosis(flat).text == extract_diagnosis(ZH).text


def test_chinese_report_without_a_diagnostic_section():
    text = "个人史：生于江苏省。\n既往史：否认高血压。\n"
    result = extract_diagnosis(text)
    assert result.status == "missing" and "no diagnostic section" in result.reason
    back = report_text(text, "diagnosis", fallback="whole")
    assert back.status == "ok" and back.text == whole_report(text).text and "whole report used" in back.reason
    assert extract_diagnosis("诊断依据：\n手术指征：有。").status == "missing"  # empty section
    assert extract_diagnosis(" ").status == "bad"
    assert report_text(text, "whole").status == "ok"


def test_synthetic_lung_reports_give_the_pre_operative_diagnosis_and_its_basis():
    cfg = LungSynthConfig(n_patients=40, seed=3)
    for i in range(40):
        patient = sample_patient(cfg, i)
        text = lung_report(cfg, patient, {})
        result = extract_diagnosis(text)
        assert result.status == "ok", text
        assert re.search("[左右]肺[上中下]叶", result.text) and re.search(r"大小约\d+mm", result.text)
        assert result.text.index("可能") < result.text.index("大小约")  # the diagnosis line comes first
        for other in ("生于", "既往体质", "否认手术史", "体格检查", "手术指征", "拟于全麻下"):
            assert other not in result.text, other
