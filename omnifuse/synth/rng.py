"""Keyed random streams: the same (seed, key...) always gives the same generator.

Generators draw each entity's randomness from its own stream, so results do not depend on the order
or the process in which entities are generated (parallel rendering stays deterministic).
"""

from __future__ import annotations

import hashlib

import numpy as np


def _key_words(*key: object) -> list[int]:
    digest = hashlib.blake2b(repr(key).encode("utf-8"), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator determined by ``seed`` and an arbitrary tuple of hashable ``key`` parts."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), *_key_words(*key)])))
