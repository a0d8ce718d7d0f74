"""The one severity order. Rules, settings (`min_severity`), the store's summary columns and
every renderer rank flags by it, so it lives in a module that imports nothing."""

from __future__ import annotations

from collections.abc import Iterable

SEVERITIES = ("low", "medium", "high")
"""Ordered from least to most severe."""


def severity_rank(severity: str | None) -> int:
    """low 0 < medium 1 < high 2; unknown or none -1."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def most_severe(severities: Iterable[str | None]) -> str | None:
    """The highest of the given severities, or None when there is none."""
    return max(severities, key=severity_rank, default=None)
