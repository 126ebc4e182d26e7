"""Fixtures shared by the test modules (plain helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """Small models: one torch thread is faster (and immune to a busy machine's oversubscription).
    Test modules of the stage-2 models opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
