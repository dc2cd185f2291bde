"""Shared fixtures: the reference material in ``../shared`` (tests skip with a reason when absent)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED} (clone the project beside ../shared)")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture(scope="session")
def make_weights(reference_dir: Path):
    """The reference weight generator ``make_weights.py``, imported from ../shared (never copied)."""
    spec = importlib.util.spec_from_file_location("make_weights", reference_dir / "make_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Tools called in-process may set torch's thread count; later tests run with the default again
    (float rounding, hence near-tie argmaxes in the golden tests, depends on it)."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
