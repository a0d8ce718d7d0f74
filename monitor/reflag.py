"""Re-evaluating stored changes with the current rules (`monitor reflag`).

Changes stored before the rules improved carry the flags of their day. Reflagging recomputes
each change from the two stored texts and records the result as a new evaluation beside the
change (store: `evaluations`): nothing is overwritten, so what was detected and alerted stays
provable, and reports read the latest evaluation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .diff import DiffResult, compare
from .flags import RULES_DIR, RuleSet
from .store import Store


@dataclass(frozen=True)
class Reflagged:
    """What reflagging did to one change."""

    change_id: int
    target_id: str
    old_seq: int
    new_seq: int
    before: tuple[str, ...]  # "category/change" of the flags it had (latest evaluation or the change's own)
    after: tuple[str, ...]
    recorded: bool  # a new evaluation was stored (the flags differ from the latest)


@dataclass
class ReflagReport:
    changes: list[Reflagged] = field(default_factory=list)

    @property
    def recorded(self) -> int:
        return sum(1 for c in self.changes if c.recorded)


def rules_digest(rules_dir: Any = None) -> str:
    """Which rules an evaluation used: a short digest of the rule files' bytes."""
    digest = hashlib.sha256()
    for path in sorted((rules_dir or RULES_DIR).glob("*.yaml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _flag_keys(diff: dict[str, Any]) -> tuple[str, ...]:
    keys = []
    for change in diff.get("changes", []):
        for flag in change.get("flags", []):
            keys.append(f"{flag['category']}/{flag.get('change', 'flagged')}|{flag.get('rule')}|{flag.get('evidence')}")
    return tuple(sorted(keys))


def _labels(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({k.split("|", 1)[0] for k in keys}))


def reflag(
    store: Store,
    rules: RuleSet,
    targets: Sequence[str] = (),
    *,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReflagReport:
    """Recompute the flags of every live change (of `targets`, or all) and record those that
    differ from the latest evaluation. Signals recorded at detection (reverted) are kept."""
    where = "superseded_by is null"
    params: list[Any] = []
    if targets:
        where += f" and target_id in ({', '.join('?' for _ in targets)})"
        params.extend(targets)
    rows = list(store.db.query(
        "select c.id, c.target_id, c.old_version_id, c.new_version_id, c.old_seq, c.new_seq, c.diff, c.signals, t.service"
        f" from changes c left join targets t on t.id = c.target_id where {where} order by c.id",  # noqa: S608
        params,
    ))
    digest = rules_digest()
    report = ReflagReport()
    for index, row in enumerate(rows, 1):
        latest = store.latest_evaluation(row["id"])
        before = _flag_keys(json.loads((latest or row)["diff"]))
        old, new = store.version_by_id(row["old_version_id"]), store.version_by_id(row["new_version_id"])
        result = compare(store.document(old), store.document(new), rules=rules, service=row["service"])
        _keep_recorded_signals(result, row["signals"])
        after = _flag_keys(result.to_dict())
        recorded = after != before
        if recorded and not dry_run:
            store.add_evaluation(row["id"], result, rules=digest)
        report.changes.append(
            Reflagged(row["id"], row["target_id"], row["old_seq"], row["new_seq"], _labels(before), _labels(after), recorded)
        )
        if progress:
            progress(index, len(rows))
    return report


def _keep_recorded_signals(result: DiffResult, signals_json: str | None) -> None:
    """A `reverted` signal was decided against the history at detection time: keep it."""
    for signal in json.loads(signals_json or "[]"):
        if signal.get("kind") == "reverted" and signal.get("version") is not None:
            result.mark_reverted(int(signal["version"]))
