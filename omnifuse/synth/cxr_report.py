"""Synthetic MIMIC-CXR free-text radiology reports for a :class:`CxrFindings`.

What is modelled
----------------
The layout of the real MIMIC-CXR report files (``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``): a ``FINAL REPORT``
banner indented by 33 spaces, every other line starting with one space, blank lines made of a single
space, sections ``EXAMINATION``, ``INDICATION`` (de-identified values written ``___``), ``TECHNIQUE``,
``COMPARISON``, ``FINDINGS`` and ``IMPRESSION``, paragraphs hard-wrapped around 70-80 characters.

The text renders *faithfully* what the findings say (the caller perturbs the findings to add report-level
noise); all randomness here is stylistic and comes from ``rng``:

* every present finding is described with graded, lateralised clinical phrasing (``small left pleural
  effusion``, ``moderate cardiomegaly``, ``patchy right lower lobe opacity concerning for pneumonia``);
  absent findings only ever appear in negated statements (``No pneumothorax.``); devices are described
  with a position, absent devices are not mentioned;
* the IMPRESSION summarises the abnormal findings, or says the study is normal;
* structural variation a section parser has to cope with: section order (TECHNIQUE/COMPARISON swapped,
  IMPRESSION before FINDINGS), ``FINDINGS AND IMPRESSION:`` combined, no FINDINGS section at all (only
  IMPRESSION, which then carries the full description; probability ``no_findings_section_prob``),
  heading spelling (``Findings:``, ``FINDINGS :``, ``PA AND LATERAL VIEWS OF THE CHEST:``), ``HISTORY:``
  for ``INDICATION:``, trailing whitespace, an occasional ``WET READ:`` block before the banner, a
  ``NOTIFICATION:`` section, numbered impressions, one or two spaces between sentences.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

import numpy as np

from omnifuse.synth.cxr_findings import VIEWS, CxrFindings

__all__ = ["exam_title", "write_report"]

BANNER = " " * 33 + "FINAL REPORT"
DEID = "___"
_BLANK = " "


# ----------------------------------------------------------------------------------------------------
# Random style helpers
# ----------------------------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _chance(rng: np.random.Generator, probability: float) -> bool:
    return bool(rng.random() < probability)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _grade(severity: float, words: Sequence[tuple[float, Sequence[str]]], rng: np.random.Generator) -> str:
    """The grading word for a severity: the first band whose upper limit is above it."""
    for limit, options in words:
        if severity < limit:
            return _pick(rng, options)
    return _pick(rng, words[-1][1])


# ----------------------------------------------------------------------------------------------------
# Header sections
# ----------------------------------------------------------------------------------------------------


def exam_title(views: Sequence[str]) -> str:
    """The EXAMINATION line for these views, e.g. ``CHEST (PORTABLE AP)``, ``CHEST (PA AND LAT)``."""
    kinds = set(views)
    unknown = kinds - set(VIEWS)
    if not kinds or unknown:
        raise ValueError(f"views must be a non-empty subset of {VIEWS}, got {list(views)}")
    if kinds == {"AP"}:
        return "CHEST (PORTABLE AP)"
    if kinds == {"PA"}:
        return "CHEST (SINGLE VIEW)"
    if kinds == {"LATERAL"}:
        return "CHEST (LATERAL VIEW ONLY)"
    if kinds == {"AP", "LATERAL"}:
        return "CHEST (AP AND LAT)"
    return "CHEST (PA AND LAT)"


def _technique(views: Sequence[str], rng: np.random.Generator) -> str:
    kinds = set(views)
    if kinds == {"AP"}:
        return _pick(
            rng,
            (
                "Portable AP chest radiograph.",
                "Single portable AP view of the chest.",
                "AP portable upright view of the chest.",
                "Portable semi-upright AP view of the chest.",
            ),
        )
    if kinds == {"PA"}:
        return _pick(rng, ("Single frontal view of the chest.", "PA view of the chest."))
    if kinds == {"LATERAL"}:
        return "Single lateral view of the chest."
    if "LATERAL" in kinds and "PA" in kinds:
        return _pick(
            rng,
            (
                "Chest PA and lateral",
                "PA and lateral views of the chest.",
                "Frontal and lateral views of the chest.",
            ),
        )
    return _pick(rng, ("AP and lateral views of the chest.", "Frontal and lateral views of the chest."))


def _gender_word(gender: str, rng: np.random.Generator) -> str:
    g = gender.strip().lower()[:1]
    if g == "m":
        return _pick(rng, ("man", "man", "male", "M"))
    if g == "f":
        return _pick(rng, ("woman", "woman", "female", "F"))
    return "patient"


def _indication(age: int, gender: str, indication: str, has_devices: bool, rng: np.random.Generator) -> str:
    """``___ year old woman with <indication>  // <question>`` (ages are de-identified, as in MIMIC)."""
    age_text = str(age) if age <= 89 and _chance(rng, 0.1) else DEID
    who = _gender_word(gender, rng)
    if len(who) == 1:  # "___F with ..."
        person = f"{age_text}{who}"
    else:
        person = _pick(rng, (f"{age_text} year old {who}", f"{age_text}-year-old {who}"))
    reason = indication.strip().rstrip(".") or "shortness of breath"
    text = f"{person} with {reason}"
    if _chance(rng, 0.75):
        questions = [
            "eval for pneumonia",
            "eval for infiltrate",
            "?pna",
            "r/o acute process",
            "assess for interval change",
            "eval for effusion",
            "evaluate for edema",
        ]
        if has_devices:
            questions += ["assess tube placement", "line placement", "eval ETT position"]
        text += "  // " + _pick(rng, questions)
    return text


def _comparison(has_prior: bool, rng: np.random.Generator) -> str:
    if has_prior:
        return _pick(
            rng,
            (
                DEID,
                DEID,
                f"Chest radiograph from {DEID}.",
                f"Prior chest radiographs {DEID}.",
                f"Comparison is made to prior study from {DEID}.",
            ),
        )
    return _pick(rng, ("None.", "None.", "None available.", "No prior studies available for comparison."))


# ----------------------------------------------------------------------------------------------------
# Finding sentences (positive statements never contain a negation; negative ones always do)
# ----------------------------------------------------------------------------------------------------

_SIZE = (
    (0.12, ("trace", "tiny")),
    (0.35, ("small",)),
    (0.55, ("small to moderate", "moderate")),
    (0.8, ("moderate", "moderate to large")),
    (1.01, ("large",)),
)
_DEGREE = ((0.35, ("mild",)), (0.7, ("moderate",)), (1.01, ("severe", "marked")))


def _effusion(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    size = _grade(f.effusion, _SIZE, rng)
    if f.effusion_side == "bilateral":
        noun = _pick(rng, (f"{size} bilateral pleural effusions", f"bilateral {size} pleural effusions"))
        short = f"{size} bilateral pleural effusions"
    else:
        noun = f"{size} {f.effusion_side} pleural effusion"
        short = noun
    sentence = _pick(
        rng,
        (
            f"{_cap(noun)}.",
            f"There is a {noun}.",
            f"{_cap(noun)} is present.",
            f"{_cap(noun)} with blunting of the costophrenic angle.",
        ),
    )
    if f.effusion_side == "bilateral":
        sentence = sentence.replace("There is a ", "There are ").replace(" is present.", " are present.")
        sentence = sentence.replace("of the costophrenic angle", "of the costophrenic angles")
    if f.effusion < 0.25 and f.effusion_side != "bilateral" and _chance(rng, 0.3):
        sentence = f"Blunting of the {f.effusion_side} costophrenic angle reflects a {size} pleural effusion."
    return sentence, short


def _opacity(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    quality = _grade(
        f.opacity,
        (
            (0.35, ("subtle", "patchy", "hazy")),
            (0.7, ("patchy", "focal", "confluent")),
            (1.01, ("dense", "extensive", "multifocal")),
        ),
        rng,
    )
    if f.opacity_side == "bilateral":
        where = _pick(rng, ("bibasilar", "bilateral lower lobe", "bilateral lower lung"))
        noun = _pick(rng, ("opacities", "consolidations", "airspace opacities"))
    else:
        where = _pick(
            rng,
            (
                f"{f.opacity_side} lower lobe",
                f"{f.opacity_side} basilar",
                f"{f.opacity_side} lower lung",
                f"{f.opacity_side} mid and lower lung",
            ),
        )
        noun = _pick(rng, ("opacity", "consolidation", "airspace opacity"))
    meaning = _pick(
        rng,
        (
            "concerning for pneumonia",
            "compatible with pneumonia",
            "which may reflect pneumonia",
            "suspicious for infection",
            "",
        ),
    )
    body = f"{quality} {where} {noun}"
    sentence = _pick(
        rng,
        (
            f"{_cap(body)} {meaning}".strip() + ".",
            f"There is {body} {meaning}".strip() + ".",
            f"{_cap(body)} is seen {meaning}".strip() + ".",
        ),
    )
    if f.opacity_side == "bilateral":
        sentence = sentence.replace("There is ", "There are ").replace(" is seen", " are seen")
    short = _pick(rng, (f"{body} concerning for pneumonia", f"{where} pneumonia", f"{body}"))
    return re.sub(r"\s+", " ", sentence), short


def _edema(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    if f.edema < 0.35:
        noun = _pick(
            rng,
            (
                "mild pulmonary vascular congestion",
                "mild interstitial edema",
                "mild pulmonary edema",
                "mild vascular engorgement",
            ),
        )
    elif f.edema < 0.7:
        noun = _pick(
            rng,
            (
                "moderate pulmonary edema",
                "moderate interstitial pulmonary edema",
                "moderate pulmonary vascular congestion with interstitial edema",
            ),
        )
    else:
        noun = _pick(rng, ("severe pulmonary edema", "extensive alveolar edema", "marked pulmonary edema"))
    sentence = _pick(rng, (f"{_cap(noun)}.", f"There is {noun}.", f"Findings are compatible with {noun}."))
    return sentence, noun


def _cardiomegaly(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    degree = _grade(f.cardiomegaly, _DEGREE, rng)
    adverb = {"mild": "mildly", "moderate": "moderately", "severe": "severely", "marked": "markedly"}[degree]
    sentence = _pick(
        rng,
        (
            f"{_cap(degree)} cardiomegaly.",
            f"There is {degree} cardiomegaly.",
            f"The heart is {adverb} enlarged.",
            f"The cardiac silhouette is {adverb} enlarged.",
            f"{_cap(degree)} enlargement of the cardiac silhouette.",
        ),
    )
    return sentence, f"{degree} cardiomegaly"


def _atelectasis(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    degree = _grade(
        f.atelectasis,
        ((0.35, ("minimal", "mild")), (0.7, ("", "moderate")), (1.01, ("extensive", "substantial"))),
        rng,
    )
    noun = _pick(
        rng,
        (
            f"{degree} bibasilar atelectasis",
            f"{degree} plate-like atelectasis at the lung bases",
            f"{degree} bibasilar linear atelectasis",
        ),
    )
    noun = re.sub(r"\s+", " ", noun).strip()
    sentence = _pick(rng, (f"{_cap(noun)}.", f"There is {noun}.", f"{_cap(noun)} is noted."))
    return sentence, noun


def _pneumothorax(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    size = _grade(
        f.pneumothorax,
        ((0.35, ("small", "tiny")), (0.7, ("moderate", "moderate-sized")), (1.01, ("large",))),
        rng,
    )
    if f.pneumothorax_side == "bilateral":
        noun = f"{size} bilateral " + _pick(rng, ("apical pneumothoraces", "pneumothoraces"))
    else:
        where = _pick(rng, ("apical ", "apicolateral ", "")) if f.pneumothorax < 0.5 else ""
        noun = f"{size} {f.pneumothorax_side} {where}pneumothorax"
    sentence = _pick(rng, (f"{_cap(noun)}.", f"There is a {noun}.", f"{_cap(noun)} is present."))
    if f.pneumothorax_side == "bilateral":
        sentence = sentence.replace("There is a ", "There are ").replace(" is present.", " are present.")
    return sentence, noun


def _diffuse(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    """Lung injury: every phrase names it "diffuse" (and only these phrases do)."""
    x = f.diffuse
    if x < 0.3:
        body = _pick(rng, ("mild diffuse bilateral hazy opacities", "patchy diffuse bilateral opacities"))
    elif x < 0.65:
        body = _pick(
            rng,
            (
                "diffuse bilateral airspace opacities",
                "moderate diffuse bilateral parenchymal opacities",
                "diffuse multifocal bilateral airspace opacities",
            ),
        )
    else:
        body = _pick(
            rng,
            (
                "extensive diffuse bilateral airspace consolidation",
                "severe diffuse bilateral airspace opacities",
                "diffuse bilateral opacification with near white-out of both lungs",
            ),
        )
    meaning = _pick(
        rng,
        (
            "concerning for ARDS",
            "which may reflect ARDS, multifocal infection or edema",
            "compatible with acute lung injury",
            "",
        ),
    )
    sentence = _pick(
        rng,
        (
            f"{_cap(body)} {meaning}".strip() + ".",
            f"There are {body} {meaning}".strip() + ".",
        ),
    )
    short = _pick(rng, (f"{body} concerning for ARDS", body))
    return re.sub(r"\s+", " ", sentence), short


def _hyperinflation(f: CxrFindings, rng: np.random.Generator) -> tuple[str, str]:
    if f.hyperinflation < 0.5:
        noun = _pick(rng, ("mildly hyperinflated lungs", "mild hyperexpansion of the lungs"))
    else:
        noun = _pick(
            rng,
            (
                "hyperinflated lungs with flattening of the hemidiaphragms",
                "marked hyperexpansion of the lungs",
                "hyperinflated lungs with emphysematous changes",
            ),
        )
    meaning = _pick(rng, ("consistent with COPD", "compatible with emphysema", ""))
    sentence = _pick(
        rng, (f"{_cap(noun)} {meaning}".strip() + ".", f"There are {noun} {meaning}".strip() + ".")
    )
    return re.sub(r"\s+", " ", sentence), noun


_FINDING_WRITERS = (
    ("diffuse", _diffuse),
    ("opacity", _opacity),
    ("edema", _edema),
    ("effusion", _effusion),
    ("pneumothorax", _pneumothorax),
    ("atelectasis", _atelectasis),
    ("cardiomegaly", _cardiomegaly),
    ("hyperinflation", _hyperinflation),
)


def _device_sentence(device: str, rng: np.random.Generator) -> tuple[str, str]:
    """A positioned description of one support device, and a short impression phrase."""
    if device == "ett":
        cm = f"{rng.uniform(2.5, 6.5):.1f}"
        sentence = _pick(
            rng,
            (
                f"Endotracheal tube terminates {cm} cm above the carina.",
                f"The endotracheal tube tip is {cm} cm above the carina.",
                f"ET tube is in standard position, {cm} cm from the carina.",
            ),
        )
        return sentence, "endotracheal tube in standard position"
    if device == "ng_tube":
        sentence = _pick(
            rng,
            (
                "Enteric tube courses below the diaphragm with the tip in the stomach.",
                "Nasogastric tube tip is in the stomach.",
                "An orogastric tube passes below the diaphragm, tip out of view.",
                "Enteric tube courses below the diaphragm.",
            ),
        )
        return sentence, "enteric tube in the stomach"
    if device == "central_line":
        line = _pick(
            rng,
            (
                "Right internal jugular central venous catheter",
                "Left internal jugular central line",
                "Right subclavian central venous catheter",
                "Right PICC line",
                "Left PICC line",
            ),
        )
        end = _pick(
            rng,
            (
                "ends in the mid SVC",
                "terminates in the lower SVC",
                "tip projects over the cavoatrial junction",
                "terminates at the cavoatrial junction",
            ),
        )
        return f"{line} {end}.", "central venous catheter in good position"
    if device == "pacemaker":
        sentence = _pick(
            rng,
            (
                "Left-sided pacemaker with leads in the right atrium and right ventricle.",
                "Left chest wall dual-chamber pacemaker with leads terminating in the right atrium "
                "and right ventricle.",
                "Left-sided pacemaker device with leads in expected position.",
            ),
        )
        return sentence, "pacemaker leads in expected position"
    if device == "sternal_wires":
        sentence = _pick(
            rng,
            (
                "Median sternotomy wires are intact.",
                "Patient is status post median sternotomy.",
                "Intact median sternotomy wires.",
            ),
        )
        return sentence, "status post median sternotomy"
    raise ValueError(f"unknown device {device!r}")


def _normal_sentences(f: CxrFindings, rng: np.random.Generator) -> list[str]:
    """Negated statements for the absent findings (always containing a negation word)."""
    out: list[str] = []
    lung_other = f.edema > 0 or f.atelectasis > 0 or f.pneumothorax > 0 or f.diffuse > 0
    if f.opacity == 0 and f.effusion == 0 and f.pneumothorax == 0 and _chance(rng, 0.35):
        out.append(
            _pick(
                rng,
                (
                    "No focal consolidation, pleural effusion, or pneumothorax.",
                    "There is no focal consolidation, pleural effusion or pneumothorax.",
                ),
            )
        )
    else:
        if f.opacity == 0:
            if lung_other:
                out.append(
                    _pick(rng, ("No focal consolidation.", "No focal consolidation to suggest pneumonia."))
                )
            else:
                out.append(
                    _pick(
                        rng,
                        (
                            "The lungs are clear without focal consolidation.",
                            "No focal consolidation.",
                            "Lungs are clear, with no focal consolidation.",
                        ),
                    )
                )
        if f.effusion == 0 and f.pneumothorax == 0:
            out.append(
                _pick(
                    rng,
                    (
                        "No pleural effusion or pneumothorax.",
                        "There is no pleural effusion or pneumothorax.",
                        "No pleural effusion or pneumothorax is seen.",
                    ),
                )
            )
        elif f.effusion == 0:
            out.append(_pick(rng, ("No pleural effusion.", "There is no pleural effusion.")))
        elif f.pneumothorax == 0:
            out.append(
                _pick(rng, ("No pneumothorax.", "There is no pneumothorax.", "No pneumothorax is seen."))
            )
    if f.edema == 0 and _chance(rng, 0.5):
        out.append(
            _pick(
                rng,
                (
                    "No pulmonary edema.",
                    "There is no pulmonary vascular congestion.",
                    "No evidence of pulmonary edema.",
                ),
            )
        )
    if f.cardiomegaly == 0:
        out.append(
            _pick(
                rng,
                (
                    "The cardiomediastinal silhouette is within normal limits.",
                    "Heart size is normal.",
                    "The cardiac silhouette is not enlarged.",
                    "Cardiomediastinal silhouette is normal.",
                    "Heart size is normal. Mediastinal and hilar contours are unremarkable.",
                ),
            )
        )
    elif _chance(rng, 0.5):
        out.append(
            _pick(
                rng,
                (
                    "Mediastinal and hilar contours are unremarkable.",
                    "The mediastinal contours are within normal limits.",
                ),
            )
        )
    if _chance(rng, 0.3):
        out.append(
            _pick(
                rng,
                (
                    "No acute osseous abnormality.",
                    "No displaced fracture is seen.",
                    "Osseous structures are without acute abnormality.",
                ),
            )
        )
    return out


GENERIC_DEVICES = (
    "Support devices are unchanged in position.",
    "Lines and tubes are in unchanged position.",
    "Monitoring and support devices are stable.",
)


def _describe(
    f: CxrFindings, rng: np.random.Generator, generic_devices: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """Sentences for the FINDINGS paragraph, plus impression phrases for findings and for devices."""
    device_text = [_device_sentence(d, rng) for d in f.devices]
    finding_text = [(name, *writer(f, rng)) for name, writer in _FINDING_WRITERS if getattr(f, name) > 0]
    positive = [sentence for _, sentence, _ in finding_text]
    if _chance(rng, 0.3):  # some radiologists start with the heart
        positive = positive[-1:] + positive[:-1] if f.cardiomegaly > 0 else positive
    negatives = _normal_sentences(f, rng)
    devices = [sentence for sentence, _ in device_text]
    if generic_devices:  # devices the reader does not name one by one
        devices.append(_pick(rng, GENERIC_DEVICES))
    sentences = devices + positive + negatives if _chance(rng, 0.8) else positive + negatives + devices
    if f.habitus > 0.4 and _chance(rng, 0.3 + 0.6 * f.habitus):
        limited = _pick(
            rng,
            (
                "Evaluation is limited by patient body habitus.",
                "Study is limited by large body habitus.",
                "Large body habitus limits assessment of the lung bases.",
            ),
        )
        sentences = [limited, *sentences]
    ranked = sorted(finding_text, key=lambda item: -getattr(f, item[0]))
    return sentences, [short for _, _, short in ranked], [short for _, short in device_text]


def _impression(
    f: CxrFindings, finding_phrases: list[str], device_phrases: list[str], rng: np.random.Generator
) -> list[str]:
    """IMPRESSION items summarising FINDINGS: the two or three most severe abnormalities, or normal."""
    items = [_cap(p) + "." for p in finding_phrases[: 2 + int(rng.integers(2))]]
    if device_phrases and _chance(rng, 0.4):
        tubes = {"ett", "ng_tube", "central_line"} & set(f.devices)
        items.append("Lines and tubes in standard position." if tubes else "Support devices as above.")
    if f.is_normal:
        items.append(
            _pick(
                rng,
                (
                    "No acute cardiopulmonary process.",
                    "No acute cardiopulmonary abnormality.",
                    "No acute intrathoracic process.",
                    "Normal chest radiograph.",
                ),
            )
        )
    return items


# ----------------------------------------------------------------------------------------------------
# Layout
# ----------------------------------------------------------------------------------------------------


def _wrap(text: str, width: int) -> list[str]:
    """Hard-wrap a paragraph like the MIMIC files: each line starts with one space."""
    return [" " + line for line in textwrap.wrap(text, width=width, break_on_hyphens=False)]


def _paragraph(sentences: Sequence[str], rng: np.random.Generator) -> str:
    joiner = "  " if _chance(rng, 0.4) else " "
    return joiner.join(sentences)


def _impression_lines(items: list[str], width: int, rng: np.random.Generator) -> list[str]:
    if len(items) > 1 and _chance(rng, 0.3):
        lines: list[str] = []
        for k, item in enumerate(items, 1):
            lines += _wrap(f"{k}. {item}", width)
            if _chance(rng, 0.5):
                lines.append(_BLANK)
        return lines[:-1] if lines[-1] == _BLANK else lines
    return _wrap(_paragraph(items, rng), width)


def _heading(name: str, rng: np.random.Generator, trailing: bool = True) -> str:
    """A section heading with realistic spelling noise (case, space before the colon, trailing space)."""
    roll = rng.random()
    if roll < 0.08:
        name = name.title()
    elif roll < 0.12:
        name = name.capitalize()
    colon = " :" if _chance(rng, 0.05) else ":"
    return f" {name}{colon}" + (" " if trailing and _chance(rng, 0.85) else "")


def _header_line(name: str, value: str, rng: np.random.Generator) -> list[str]:
    """``NAME:  value`` (two spaces after the colon, as in MIMIC), wrapped."""
    gap = "  " if _chance(rng, 0.9) else " "
    return _wrap(f"{name}:{gap}{value}", 78)


def _wet_read(finding_phrases: list[str], device_phrases: list[str], rng: np.random.Generator) -> list[str]:
    """Preliminary read by the resident, before the final report banner."""
    summary = ".  ".join(_cap(p) for p in (finding_phrases + device_phrases)[:3]) or "No acute process"
    hour = int(rng.integers(1, 13))
    minute = int(rng.integers(60))
    stamp = f" WET READ: {DEID} {DEID} {DEID} {hour}:{minute:02d} {_pick(rng, ('AM', 'PM'))}"
    return [stamp, *(" " + line for line in _wrap(summary + ".", 76)), " " + "_" * 78]


def write_report(
    findings: CxrFindings,
    *,
    views: Sequence[str],
    age: int,
    gender: str,
    indication: str,
    has_prior: bool,
    rng: np.random.Generator,
    no_findings_section_prob: float = 0.1,
    generic_devices: bool = False,
) -> str:
    """A realistic MIMIC-CXR report text (ends with a newline) describing ``findings``.

    ``views`` are the study's images (for EXAMINATION/TECHNIQUE), ``indication`` the clinical reason
    (e.g. ``"hypoxia"``), ``has_prior`` whether a comparison study exists. With probability
    ``no_findings_section_prob`` the report has no FINDINGS section and its IMPRESSION carries the
    full description. ``generic_devices``: the study has support devices that ``findings`` leaves out;
    the report mentions them without naming them (``Lines and tubes are in unchanged position.``), as
    follow-up ICU reports often do. Deterministic for a given ``rng`` state.
    """
    if not 0.0 <= no_findings_section_prob <= 1.0:
        raise ValueError(f"no_findings_section_prob must be in [0, 1], got {no_findings_section_prob}")
    title = exam_title(views)
    width = int(rng.integers(70, 80))
    has_findings = rng.random() >= no_findings_section_prob
    combined = has_findings and _chance(rng, 0.08)
    sentences, finding_phrases, device_phrases = _describe(findings, rng, generic_devices)

    lines: list[str] = []
    if _chance(rng, 0.06):
        lines += _wet_read(finding_phrases, device_phrases, rng)
    lines.append(BANNER)
    lines += _header_line("EXAMINATION", title, rng)
    header = [
        _header_line(
            _pick(rng, ("INDICATION", "INDICATION", "INDICATION", "HISTORY")),
            _indication(age, gender, indication, bool(findings.devices), rng),
            rng,
        ),
        _header_line("TECHNIQUE", _technique(views, rng), rng),
        _header_line("COMPARISON", _comparison(has_prior, rng), rng),
    ]
    if _chance(rng, 0.15):
        header[1], header[2] = header[2], header[1]
    for block in header:
        lines += [_BLANK, *block]

    findings_block: list[str] = []
    if has_findings:
        body = _paragraph(sentences, rng)
        if combined:
            name = "FINDINGS AND IMPRESSION"
            if findings.is_normal:
                body += " " + _pick(
                    rng, ("No acute cardiopulmonary process.", "No acute intrathoracic process.")
                )
        elif set(views) == {"PA", "LATERAL"} and _chance(rng, 0.07):
            name = "PA AND LATERAL VIEWS OF THE CHEST"
        else:
            name = "FINDINGS"
        findings_block = [_BLANK, _heading(name, rng), _BLANK, *_wrap(body, width)]
    impression_block: list[str] = []
    if not combined:
        if has_findings:
            items = _impression(findings, finding_phrases, device_phrases, rng)
        else:  # the impression is the only section and carries the full description
            items = [_paragraph(sentences, rng)]
            if findings.is_normal:
                items.append(
                    _pick(rng, ("No acute cardiopulmonary process.", "No acute intrathoracic process."))
                )
        impression_block = [
            _BLANK,
            _heading("IMPRESSION", rng),
            _BLANK,
            *_impression_lines(items, width, rng),
        ]
    if impression_block and findings_block and _chance(rng, 0.04):
        lines += impression_block + findings_block
    else:
        lines += findings_block + impression_block
    urgent = (
        findings.pneumothorax > 0 or findings.opacity > 0.5 or findings.edema > 0.7 or findings.diffuse > 0.65
    )
    if urgent and _chance(rng, 0.3):
        minute = int(rng.integers(60))
        note = (
            f"The findings were discussed with Dr. {DEID} by Dr. {DEID} on the telephone on {DEID} at "
            f"{int(rng.integers(1, 13))}:{minute:02d} {_pick(rng, ('AM', 'PM'))}, "
            f"{int(rng.integers(2, 30))} minutes after discovery of the findings."
        )
        lines += [_BLANK, *_header_line("NOTIFICATION", note, rng)]
    lines = [line + " " if line.strip() and line != BANNER and _chance(rng, 0.03) else line for line in lines]
    return "\n".join(lines) + "\n"
