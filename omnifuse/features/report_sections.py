"""Sections of free-text radiology reports: the FINDINGS text of a MIMIC-CXR report.

Rules (what the text encoder sees for a MIMIC-CXR report):

* The report is split at section headings. A heading is a name followed by a colon at the start of a
  line (``FINDINGS:``, ``Findings :``, ``FINDINGS AND IMPRESSION:``, ``PA AND LATERAL VIEWS OF THE
  CHEST:``), a known name alone on its line (``IMPRESSION``), a known upper-case name inside a line
  after a sentence end (``... effusion. IMPRESSION: ...``, for reports whose line breaks were lost),
  a ``WET READ`` / ``PROVISIONAL FINDINGS IMPRESSION (PFI)`` line, the ``FINAL REPORT`` /
  ``FINAL ADDENDUM`` banner, or a separator line of underscores.
* Known names are matched in any case and with common misspellings (``FINDNGS``, ``IMPRESSON``);
  other names count as headings only when written in capitals (or, for a description of the
  views taken, when alone on their line), and unknown capitalised names only as sub-headings:
  ``LUNGS: clear.`` inside a FINDINGS section stays part of it.
* FINDINGS = every non-empty section whose name contains "finding" (``FINDINGS``, ``FINDING``,
  ``FINDINGS AND IMPRESSION``, ``FINDINGS/IMPRESSION``), joined in report order, in any position
  relative to the other sections. ``PROVISIONAL FINDINGS IMPRESSION (PFI)`` is a preliminary read,
  not FINDINGS. Only when there is no such section, a view heading (``CHEST, TWO VIEWS:``,
  ``PORTABLE AP CHEST:``, ``PA AND LATERAL VIEWS OF THE CHEST:``) stands in for it.
* Text is cleaned: separator lines dropped, whitespace collapsed; de-identification marks ``___``
  are kept. A section with no words left (empty, or only ``___``) counts as absent, and so does a
  FINDINGS that only points elsewhere (``See impression.``, ``As above.``).
* No FINDINGS: the report is *missing* for this modality, with the reason; with ``fallback =
  "impression"`` the IMPRESSION (or CONCLUSION) text is used instead, with ``fallback = "whole"`` the
  whole report, and the result says so.
* An empty or whitespace-only report is a *bad input* (the caller counts it as a failure).

Chinese clinical reports (the lung task) are used whole (:func:`whole_report` only normalises
whitespace) or, with ``section = "diagnosis"``, cut to their diagnostic sections
(:func:`extract_diagnosis`):

* A Chinese heading is a known section name (``ZH_HEADINGS``: 诊断依据, 影像学检查, 辅助检查,
  检查所见, 诊断, 初步诊断, ... and the history, examination and plan headings that end them:
  主诉, 现病史, 个人史, 既往史, 手术史, 体格检查, 鉴别诊断, 手术指征, ...) at the start of a
  line, followed by a full-width or half-width colon (``诊断依据：``, ``诊断依据:``,
  ``诊断依据 ：``), or inside 【】 brackets (``【诊断依据】``, colon optional). Spaces inside
  the name are ignored (``诊 断 依 据：``); an enumeration before it is allowed (``五、``,
  ``5.``, ``（五）``). For reports whose line breaks were lost, a known name followed by a colon
  right after a sentence end (。；！？) is a heading too. Unknown names followed by a colon
  (``胸部CT示：``, ``肿瘤标志物：``) are part of the text, not headings; unknown names in 【】
  are headings (they end the section before them).
* DIAGNOSIS = every non-empty section of the diagnostic group (``ZH_HEADINGS["diagnosis"]``), joined in
  report order, headings excluded. Differential diagnosis (鉴别诊断) is not part of it.
* No diagnostic section: the report is *missing* for this modality (with the reason), or with
  ``fallback = "whole"`` the whole report is used instead, and the result says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from omnifuse.features.options import FALLBACKS, SECTIONS

# Headings of Chinese clinical records (admission notes, pre-operative summaries, imaging reports).
ZH_HEADINGS: dict[str, tuple[str, ...]] = {
    "diagnosis": (
        "诊断依据", "影像学检查", "影像学表现", "影像表现", "影像所见", "影像学所见", "检查所见", "辅助检查",
        "诊断", "初步诊断", "入院诊断", "术前诊断", "临床诊断", "影像诊断", "诊断意见", "检查结论",
        "印象", "影像印象", "诊断结论",
    ),
    "other": (
        "主诉", "现病史", "病史摘要", "病史", "既往史", "个人史", "婚育史", "婚姻史", "生育史", "月经史",
        "家族史", "手术史", "外伤史", "输血史", "过敏史", "药物过敏史", "预防接种史", "传染病史",
        "体格检查", "查体", "专科检查", "专科情况", "一般情况", "实验室检查", "鉴别诊断", "诊疗计划",
        "治疗计划", "处理意见", "手术指征", "手术适应证", "手术禁忌证", "手术方案", "拟行手术", "拟施手术",
        "术前讨论", "术前准备", "注意事项", "出院医嘱", "医嘱", "备注",
    ),
}  # fmt: skip

# Canonical names of the sections that end a FINDINGS section (and misspellings seen in MIMIC-CXR).
_KNOWN = {
    "findings": "findings",
    "finding": "findings",
    "findngs": "findings",
    "findins": "findings",
    "findindgs": "findings",
    "findgings": "findings",
    "findnings": "findings",
    "finidngs": "findings",
    "fidings": "findings",
    "impression": "impression",
    "impressions": "impression",
    "impresson": "impression",
    "imprression": "impression",
    "imoression": "impression",
    "impressoin": "impression",
    "imprssion": "impression",
    "impresion": "impression",
    "imperssion": "impression",
    "impession": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "provisional findings impression (pfi)": "provisional",
    "provisional findings impression": "provisional",
    "pfi": "provisional",
    "wet read": "wet read",
    "wetread": "wet read",
    "examination": "examination",
    "exam": "examination",
    "type of examination": "examination",
    "study": "examination",
    "procedure": "examination",
    "indication": "indication",
    "indications": "indication",
    "idication": "indication",
    "clinical indication": "indication",
    "reason for examination": "indication",
    "reason for exam": "indication",
    "reason for study": "indication",
    "reason": "indication",
    "history": "history",
    "clinical history": "history",
    "patient history": "history",
    "clinical information": "history",
    "clinical data": "history",
    "technique": "technique",
    "comparison": "comparison",
    "comparisons": "comparison",
    "comparison exam": "comparison",
    "comparison film": "comparison",
    "comparision": "comparison",
    "comparsion": "comparison",
    "comparrison": "comparison",
    "reference exam": "comparison",
    "prior": "comparison",
    "notification": "notification",
    "recommendation": "recommendations",
    "recommendations": "recommendations",
    "recommendation(s)": "recommendations",
    "addendum": "addendum",
    "final addendum": "addendum",
    "final report": "banner",
}
# Upper-case names recognised inside a line (after a sentence end), for reports that lost line breaks.
_INLINE = (
    "FINDINGS AND IMPRESSION",
    "FINDINGS/IMPRESSION",
    "FINDINGS",
    "IMPRESSION",
    "CONCLUSION",
    "RECOMMENDATION(S)",
    "RECOMMENDATIONS",
    "NOTIFICATION",
    "COMPARISON",
    "INDICATION",
    "HISTORY",
    "TECHNIQUE",
    "EXAMINATION",
    "ADDENDUM",
)
# Headings that describe the views taken: they stand in for FINDINGS when there is none.
_VIEW_HEADING = re.compile(
    r"\b(chest|portable|pa and lat|lateral and pa|ap and lat|lateral and ap|frontal|two views|"
    r"pa view|ap view|one view|single view|lateral view|upright|semi-upright|supine|radiograph)\b"
)
_NAME = r"[A-Za-z][A-Za-z /(),&'-]{0,60}?"
_LINE_HEADING = re.compile(rf"^[ \t]*(?P<name>{_NAME})[ \t]*:", re.M)
_BARE_HEADING = re.compile(r"^[ \t]*(?P<name>[A-Za-z][A-Za-z /()]{2,40}?)[ \t]*$", re.M)
_SPECIAL_HEADING = re.compile(
    r"^[ \t]*(?P<name>WET READ(?: VERSION #?\d+)?|PROVISIONAL FINDINGS IMPRESSION \(PFI\))[ \t]*:?"
    r"|^[ \t]*(?P<banner>FINAL REPORT|FINAL ADDENDUM)[ \t]*$",
    re.M,
)
_INLINE_HEADING = re.compile(
    r"(?<=[.!?;])[ \t]+(?P<name>" + "|".join(re.escape(n) for n in _INLINE) + r")[ \t]*:"
)
_SEPARATOR = re.compile(r"^[ \t]*[_=-]{10,}[ \t]*$", re.M)
_POINTER = re.compile(
    r"^(please )?(see|refer to|as (described|noted|stated)?\s*(in|on)?)?\s*(the )?"
    r"(impression|above|below|conclusion|report above|wet read|prior report)( section)?( above| below)?\.?$",
    re.I,
)
_WORD = re.compile(r"[A-Za-z]{2,}|[\u4e00-\u9fff]")


@dataclass(frozen=True)
class Section:
    """One section of a report: canonical ``name`` (``other`` for unknown capitals), the heading as
    written, and the cleaned text (heading excluded)."""

    name: str
    heading: str
    text: str
    start: int


@dataclass(frozen=True)
class Extracted:
    """Result of :func:`extract_findings`: ``text`` is None when the report has no usable text.

    ``status``: ``ok`` (text found), ``missing`` (no FINDINGS: a natural absence), ``bad`` (an
    unusable input such as an empty file). ``source`` says which section the text came from."""

    text: str | None
    status: str
    reason: str
    source: str | None = None


def normalise_text(text: str) -> str:
    """Unify line ends, drop NUL/BOM characters, tabs and non-breaking spaces become spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "").replace("\x00", "")
    return text.replace("\t", " ").replace("\u00a0", " ")


def clean_section_text(text: str) -> str:
    """Separator lines dropped, every whitespace run collapsed to one space, ends stripped."""
    return re.sub(r"\s+", " ", _SEPARATOR.sub(" ", text)).strip()


def has_words(text: str) -> bool:
    """Whether ``text`` says anything: a word of two letters or a CJK character (``___`` does not)."""
    return bool(_WORD.search(text.replace("___", " ")))


def canonical_name(raw: str) -> str | None:
    """Canonical section name of a heading as written, or None if it is not a heading.

    Known names match in any case; an unknown name is a heading (``other``, or ``view`` for a
    description of the views taken) only if it is written in capitals."""
    name = re.sub(r"\s+", " ", raw.strip().lower()).strip(" -")
    name = re.sub(r"\s*/\s*", "/", name)
    if name.startswith("wet read"):
        return "wet read"
    if name in _KNOWN:
        return _KNOWN[name]
    upper = raw.upper() == raw and any(c.isalpha() for c in raw)
    if "finding" in name and ("impression" in name or "conclusion" in name):
        return "findings"  # FINDINGS AND IMPRESSION, IMPRESSION/FINDINGS, ...
    if not upper:
        return None
    if "finding" in name:
        return "findings"
    if "impression" in name or "conclusion" in name:
        return "impression"
    if _VIEW_HEADING.search(name):
        return "view"
    for word, canon in (("history", "history"), ("comparison", "comparison"), ("addendum", "addendum")):
        if word in name:
            return canon
    return "other"


def _line_ends(text: str, pos: int) -> bool:
    """Whether only blanks follow ``pos`` on its line."""
    end = text.find("\n", pos)
    return not text[pos : end if end >= 0 else len(text)].strip()


def _headings(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, canonical name, heading as written) of every heading, in text order."""
    found: dict[int, tuple[int, int, str, str]] = {}

    def add(start: int, end: int, raw: str, canon: str | None) -> None:
        if canon is not None and start not in found:
            found[start] = (start, end, canon, raw.strip())

    for m in _SPECIAL_HEADING.finditer(text):
        raw = m["name"] or m["banner"]
        add(m.start(), m.end(), raw, canonical_name(raw) or "other")
    for m in _SEPARATOR.finditer(text):
        add(m.start(), m.end(), "", "separator")
    for m in _LINE_HEADING.finditer(text):
        canon = canonical_name(m["name"])
        if canon is None and _VIEW_HEADING.search(m["name"].lower()) and _line_ends(text, m.end()):
            canon = "view"  # "Pa and lateral views of the chest:" alone on its line
        add(m.start(), m.end(), m["name"], canon)
    for m in _BARE_HEADING.finditer(text):
        name = re.sub(r"\s+", " ", m["name"].strip().lower())
        if name in _KNOWN or ("finding" in name and "impression" in name):
            add(m.start(), m.end(), m["name"], canonical_name(m["name"]))
    for m in _INLINE_HEADING.finditer(text):
        add(m.start("name"), m.end(), m["name"], canonical_name(m["name"]))
    # a heading found inside another one's span (e.g. the name of a special heading) is dropped
    out: list[tuple[int, int, str, str]] = []
    for item in sorted(found.values()):
        if out and item[0] < out[-1][1]:
            continue
        out.append(item)
    return out


def _drop_inside_preliminary_reads(
    heads: list[tuple[int, int, str, str]],
) -> list[tuple[int, int, str, str]]:
    """A WET READ / PFI block that is closed by a separator line or the FINAL REPORT banner is one
    section: headings inside it (``Findings:`` of the preliminary read) are not sections."""
    out: list[tuple[int, int, str, str]] = []
    i = 0
    while i < len(heads):
        out.append(heads[i])
        if heads[i][2] in ("wet read", "provisional"):
            closing = next(
                (j for j in range(i + 1, len(heads)) if heads[j][2] in ("separator", "banner")), None
            )
            if closing is not None:
                i = closing
                continue
        i += 1
    return out


def _split_at(text: str, heads: list[tuple[int, int, str, str]]) -> list[Section]:
    """The sections of ``text`` between ``heads`` (start, end, name, raw heading), in order, with a
    ``preamble`` for any text before the first heading."""
    sections: list[Section] = []
    if not heads or heads[0][0] > 0:
        end = heads[0][0] if heads else len(text)
        sections.append(Section("preamble", "", clean_section_text(text[:end]), 0))
    for i, (_, end, name, raw) in enumerate(heads):
        stop = heads[i + 1][0] if i + 1 < len(heads) else len(text)
        sections.append(Section(name, raw, clean_section_text(text[end:stop]), end))
    return sections


def split_sections(text: str) -> list[Section]:
    """The report's sections in text order; text before the first heading is ``preamble``.

    Unknown capitalised headings (``other``) do not end a section: they stay in its text."""
    text = normalise_text(text)
    heads = _drop_inside_preliminary_reads([h for h in _headings(text) if h[2] != "other"])
    return _split_at(text, heads)


def _usable(sections: list[Section], names: tuple[str, ...]) -> tuple[list[str], int]:
    """Texts of the non-empty sections called ``names`` and how many such sections there were."""
    chosen = [s for s in sections if s.name in names]
    return [s.text for s in chosen if has_words(s.text)], len(chosen)


def extract_findings(text: str, fallback: str = "none") -> Extracted:
    """The FINDINGS text of a MIMIC-CXR report, following the rules of this module's docstring."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if not text or not text.strip():
        return Extracted(None, "bad", "empty report")
    sections = split_sections(text)
    texts, n_findings = _usable(sections, ("findings",))
    source = "findings"
    if not texts:  # no (non-empty) FINDINGS: a heading naming the views may stand in for it
        texts, n_views = _usable(sections, ("view",))
        source = "view heading"
        n_findings += n_views
    findings = " ".join(texts)
    if findings and not _POINTER.match(findings):
        return Extracted(findings, "ok", "", source)
    if findings:
        reason = f"FINDINGS only refers elsewhere ({findings[:40]!r})"
    elif n_findings:
        reason = "FINDINGS section is empty"
    else:
        reason = "no FINDINGS section"
    if fallback == "impression":
        impression = " ".join(_usable(sections, ("impression",))[0])
        if impression:
            return Extracted(impression, "ok", f"{reason}; IMPRESSION used instead", "impression")
        reason += " and no IMPRESSION"
    return Extracted(None, "missing", reason)


_ZH_CANON = {name: group for group, names in ZH_HEADINGS.items() for name in names}
_ZH_SPACE = "[ \t\u3000]"
_ZH_ENUM = rf"(?:[（(]?[一二三四五六七八九十0-9０-９]{{1,3}}[)）]?[、.．]?{_ZH_SPACE}*)?"
_ZH_NAME = rf"[\u4e00-\u9fff](?:[\u4e00-\u9fff]|{_ZH_SPACE}){{0,14}}?"
_ZH_LINE_HEADING = re.compile(
    rf"^{_ZH_SPACE}*{_ZH_ENUM}(?:【{_ZH_SPACE}*(?P<bracket>[^】\n]{{1,20}}?){_ZH_SPACE}*】{_ZH_SPACE}*[:：]?"
    rf"|(?P<name>{_ZH_NAME}){_ZH_SPACE}*[:：])",
    re.M,
)
_ZH_INLINE_HEADING = re.compile(
    rf"(?<=[。；;！!？?]){_ZH_SPACE}*{_ZH_ENUM}(?P<name>{_ZH_NAME}){_ZH_SPACE}*[:：]"
)


def zh_heading_name(raw: str) -> str:
    """A Chinese heading as written → its name without spaces (``诊 断 依 据`` → ``诊断依据``)."""
    return re.sub(r"[\s\u3000]+", "", raw)


def split_zh_sections(text: str) -> list[Section]:
    """The sections of a Chinese clinical report in text order (module docstring); ``name`` is the
    group of the heading (``diagnosis`` or ``other``); text before the first heading is ``preamble``."""
    text = normalise_text(text)
    found: dict[int, tuple[int, int, str, str]] = {}
    for m in _ZH_LINE_HEADING.finditer(text):
        if m["bracket"] is not None:
            raw = zh_heading_name(m["bracket"])
            found[m.start()] = (m.start(), m.end(), _ZH_CANON.get(raw, "other"), raw)
        elif zh_heading_name(m["name"]) in _ZH_CANON:
            raw = zh_heading_name(m["name"])
            found[m.start()] = (m.start(), m.end(), _ZH_CANON[raw], raw)
    for m in _ZH_INLINE_HEADING.finditer(text):
        raw = zh_heading_name(m["name"])
        if raw in _ZH_CANON and m.start() not in found:
            found[m.start()] = (m.start(), m.end(), _ZH_CANON[raw], raw)
    heads: list[tuple[int, int, str, str]] = []
    for item in sorted(found.values()):
        if heads and item[0] < heads[-1][1]:
            continue
        heads.append(item)
    return _split_at(text, heads)


def extract_diagnosis(text: str, fallback: str = "none") -> Extracted:
    """The diagnostic sections of a Chinese clinical report (module docstring); ``fallback`` ``whole``
    uses the whole report when there is none (``impression`` is a FINDINGS fallback: here it acts as
    ``none``)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
    if not text or not text.strip():
        return Extracted(None, "bad", "empty report")
    sections = split_zh_sections(text)
    chosen = [s for s in sections if s.name == "diagnosis"]
    texts = [s.text for s in chosen if has_words(s.text)]
    if texts:
        return Extracted(" ".join(texts), "ok", "", "diagnosis")
    reason = (
        "diagnostic section is empty" if chosen else "no diagnostic section (诊断依据, 辅助检查, 诊断, ...)"
    )
    if fallback == "whole":
        whole = whole_report(text)
        if whole.status == "ok":
            return Extracted(whole.text, "ok", f"{reason}; whole report used instead", "whole report")
    return Extracted(None, "missing", reason)


def whole_report(text: str) -> Extracted:
    """A report used whole (the Chinese lung reports): whitespace normalised, nothing removed."""
    cleaned = clean_section_text(normalise_text(text or ""))
    if not has_words(cleaned):
        return Extracted(None, "bad", "empty report")
    return Extracted(cleaned, "ok", "", "whole report")


def report_text(text: str, section: str, fallback: str = "none") -> Extracted:
    """Dispatch on the configured ``section``: ``findings`` (MIMIC-CXR), ``diagnosis`` (Chinese
    clinical reports) or ``whole``."""
    if section == "findings" and fallback == "whole":
        found = extract_findings(text, "none")
        if found.status != "missing":
            return found
        whole = whole_report(text)
        reason = f"{found.reason}; whole report used instead"
        return Extracted(whole.text, "ok", reason, "whole report") if whole.status == "ok" else found
    if section == "findings":
        return extract_findings(text, fallback)
    if section == "diagnosis":
        return extract_diagnosis(text, fallback)
    if section == "whole":
        return whole_report(text)
    raise ValueError(f"report section must be one of {SECTIONS}, got {section!r}")
