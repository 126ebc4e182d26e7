"""Reports: one text file → token states ``(max_tokens, H)`` of a frozen text model; mask = attention
mask.

The text is the configured section (:mod:`omnifuse.features.report_sections`): FINDINGS of English
MIMIC-CXR reports, the diagnostic sections of Chinese reports, or the whole report. Files are read as
UTF-8 (a BOM is ignored); if that fails, Windows-1252 for English and GB18030 for Chinese (noted in
the extraction report). A decoded text with more than :data:`MAX_CONTROL_SHARE` of control or
non-printing characters (other than tab, newline, carriage return, form feed) is binary data, not a
report: ``failed`` (whatever the section setting).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.features.engine import BadInput, Loaded, Sample, SampleMissing, Setup
from omnifuse.features.options import ExtractOptions
from omnifuse.features.report_sections import report_text
from omnifuse.features.runtime import Runtime
from omnifuse.features.text_model import (
    TextEncoder,
    TokenWindows,
    WindowPlanner,
    load_text_model,
    load_tokenizer,
    model_positions,
)

MAX_CONTROL_SHARE = 0.05  # random bytes decoded as cp1252 give about 11 %, real reports 0
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")
_NON_PRINTING = frozenset(("Cc", "Co", "Cn", "Cs"))  # control, private use, unassigned, surrogate


def control_share(text: str) -> float:
    """Share of characters that are control or non-printing (tab, newline, carriage return, form feed
    and vertical tab excepted; the replacement character U+FFFD counted)."""
    if not text:
        return 0.0
    bad = sum(
        1
        for c in text
        if c == "\ufffd" or (c not in _ALLOWED_CONTROLS and unicodedata.category(c) in _NON_PRINTING)
    )
    return bad / len(text)


def check_text(text: str, encoding: str) -> None:
    """:class:`BadInput` when ``text`` looks like binary data (see :data:`MAX_CONTROL_SHARE`)."""
    share = control_share(text)
    if share > MAX_CONTROL_SHARE:
        raise BadInput(
            f"not text: {share:.0%} of the {len(text)} characters decoded as {encoding} are control or "
            f"non-printing characters (more than {MAX_CONTROL_SHARE:.0%}); binary or damaged file"
        )


def read_report_file(path: Path, language: str) -> tuple[str, str]:
    """The text of a report file and a note naming a non-UTF-8 encoding when one was needed;
    :class:`BadInput` for bytes that decode to no text or to binary-looking text (:func:`check_text`)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
        check_text(text, "UTF-8")
        return text, ""
    except UnicodeDecodeError:
        pass
    fallback = "gb18030" if language == "zh" else "cp1252"
    try:
        text = raw.decode(fallback)
    except UnicodeDecodeError as exc:
        raise BadInput(f"neither UTF-8 nor {fallback} text ({exc.reason} at byte {exc.start})") from exc
    check_text(text, fallback)
    return text, f"decoded as {fallback}"


@dataclass
class ReportReader:
    planner: WindowPlanner
    section: str = "findings"  # findings | diagnosis | whole
    fallback: str = "none"  # none | impression | whole
    language: str = "en"
    max_words: int = 0  # cut to this many whitespace-separated words first (0: no limit)

    def load(self, path: Path) -> Loaded:
        text, note = read_report_file(path, self.language)
        found = report_text(text, self.section, self.fallback)
        if found.status == "bad":
            raise BadInput(found.reason)
        if found.status == "missing":
            raise SampleMissing(found.reason)
        text, counts = self.cut(found.text)
        return Loaded(text, "; ".join(n for n in (note, found.reason, counts) if n))

    def cut(self, text: str) -> tuple[str, str]:
        """The text cut to ``max_words`` words, and a note with both counts: the words (and where they
        were cut) and the tokens the model reads (and where ``max_tokens`` cuts them)."""
        words = text.split()
        note = ""
        if self.max_words:
            note = f"{len(words)} words" + (
                f", cut to {self.max_words}" if len(words) > self.max_words else ""
            )
            if len(words) > self.max_words:
                text = " ".join(words[: self.max_words])
        tokens = self.planner.n_tokens(text)
        kept = min(tokens, self.planner.max_tokens)
        return text, "; ".join(
            n for n in (note, f"{tokens} tokens" + (f", cut to {kept}" if kept < tokens else "")) if n
        )

    def collate(self, payloads: list[str]) -> TokenWindows:
        return self.planner(payloads)


class ReportEncoder:
    def __init__(self, text: TextEncoder, max_tokens: int, chunk: int) -> None:
        self.text, self.seq_len, self.dim, self.chunk = text, max_tokens, text.dim, chunk

    def __call__(self, batch: TokenWindows) -> tuple[np.ndarray, np.ndarray]:
        return self.text(batch, chunk=self.chunk)


def setup(modality: str, samples: list[Sample], opts: ExtractOptions, runtime: Runtime) -> Setup:
    import transformers

    tokenizer, tok_source = load_tokenizer(opts.text_model, opts.tokenizer)
    net, model_attrs = load_text_model(opts.text_model, opts.seed)
    planner = WindowPlanner(tokenizer, opts.max_tokens, model_positions(net, tokenizer), opts.window_overlap)
    reader = ReportReader(planner, opts.section, opts.fallback, opts.language, opts.max_words)
    encoder = ReportEncoder(TextEncoder(net, runtime.device), opts.max_tokens, opts.batch_size)
    attrs: dict[str, Any] = {**model_attrs, "transformers_version": str(transformers.__version__)}
    attrs["preprocessing"] = {
        "section": opts.section,
        "fallback": opts.fallback,
        "max_words": opts.max_words,
        "tokenizer": tok_source,
        "max_tokens": opts.max_tokens,
        "model_positions": planner.positions,
        "window_overlap": opts.window_overlap,
        "whitespace": "collapsed",
    }
    return Setup(reader, encoder, opts.max_tokens, encoder.dim, attrs)
