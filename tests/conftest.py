"""Shared fixtures and markers.

The reference material (golden outputs of the original code, the reference weight generator, the
real CamVid clip) lives in ``../shared`` beside the checkout and is never copied into the project.
Every test that reads it is marked ``golden`` (automatically, from the fixtures it uses); when the
folder is absent they are skipped, and the run ends with one line saying how many.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
_SHARED_FIXTURES = {"shared_dir", "reference_dir", "make_weights"}
_NO_SHARED = f"reference material not found at {SHARED} (clone the project beside ../shared)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.golden)
        if item.get_closest_marker("cuda") is not None:
            import torch

            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device; none is present"))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", ()) if "golden" in r.keywords]
    if skipped and not SHARED.is_dir():
        terminalreporter.write_line(
            f"faithfulness NOT tested: {len(skipped)} golden test(s) skipped because {SHARED} is absent "
            "(clone the project beside the reference material to run them)", yellow=True, bold=True)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(_NO_SHARED)
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
