"""What the flag engine hands to the rest of the monitor: categories, severities, changes, flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import MonitorError
from ..severity import SEVERITIES  # noqa: F401 - re-exported: rules are checked against it

CATEGORIES = ("ai-training", "ai-third-party", "opt-out-scope", "sensitive-data", "retention")
"""The categories a rule may raise. Checked at load so a typo in a rule file is an error, not a
category nobody filters on."""

CHANGES = (
    "added", "removed", "negated", "affirmed", "broadened", "narrowed", "qualifier-added", "qualifier-removed",
)
"""What happened to an AI statement between two versions, most telling first (a flag whose
statement changed in several ways reports the first of these as its `change`)."""


class RuleError(MonitorError, ValueError):
    """A rule file is invalid. The message is one line: file, rule id (or section), field, problem."""


@dataclass(frozen=True)
class Flag:
    """One AI statement that a change added, removed or altered, and the evidence for it.

    `side` is where the evidence was read: old (the statement is gone), new (it appeared) or
    both (it is on both sides, altered). `before` and `after` are the statement's evidence on
    each side; `changes` lists every way it changed (`change` is the first), `details` says
    what exactly (for instance "actor: + Microsoft"), and `summary` is one plain-language line."""

    category: str
    severity: str
    rule: str
    evidence: str
    side: str
    change: str = "added"
    summary: str = ""
    before: str | None = None
    after: str | None = None
    changes: tuple[str, ...] = ()
    details: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "severity": self.severity,
            "rule": self.rule,
            "evidence": self.evidence,
            "side": self.side,
            "change": self.change,
            "changes": list(self.changes or (self.change,)),
            "summary": self.summary,
            "before": self.before,
            "after": self.after,
            "details": list(self.details),
        }
