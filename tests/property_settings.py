"""Hypothesis settings shared by the property tests (tests/*/test_*_property.py).

Reproducible: ``derandomize=True`` draws the same examples on every run (for a given hypothesis
version and test), and ``database=None`` keeps no example store in the working tree, so a CI failure
is the one a local run shows. Small: each test states its ``max_examples``; ``deadline=None``
because the first example of a test pays for imports and kernel warm-up.

Tests that take a function-scoped fixture (``tmp_path``) overwrite the same files in every example,
which is why that health check is off.
"""
from __future__ import annotations

from hypothesis import HealthCheck, settings


def property_settings(max_examples: int) -> settings:
    """The settings of one property test: ``max_examples`` derandomized examples, no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
