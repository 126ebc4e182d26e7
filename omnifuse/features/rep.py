"""Reports: one text file → token states ``(max_tokens, H)`` of a frozen text model; mask = attention
mask.

English MIMIC-CXR reports give their FINDINGS (:mod:`omnifuse.features.report_sections`); Chinese
reports are used whole. Files are read as UTF-8 (a BOM is ignored); if that fails, Windows-1252 for
English and GB18030 for Chinese (noted in the extraction report).
"""

from __future__ import annotations

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


def read_report_file(path: Path, language: str) -> tuple[str, str]:
    """The text of a report file and a note naming a non-UTF-8 encoding when one was needed."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig"), ""
    except UnicodeDecodeError:
        pass
    fallback = "gb18030" if language == "zh" else "cp1252"
    try:
        return raw.decode(fallback), f"decoded as {fallback}"
    except UnicodeDecodeError as exc:
        raise BadInput(f"neither UTF-8 nor {fallback} text ({exc.reason} at byte {exc.start})") from exc


@dataclass
class ReportReader:
    planner: WindowPlanner
    section: str = "findings"  # findings | whole
    fallback: str = "none"  # none | impression
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
