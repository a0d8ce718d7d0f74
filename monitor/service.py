"""A service's documents on one time axis, and the signals only the whole service shows.

A help page may explain a setting weeks before the privacy policy admits what it does, as
LinkedIn's did in 2024. No single document's diff shows that; comparing when each document
first made a statement does. A statement here is what the flag engine reads from a sentence
(category, polarity and the parties that act, the service itself left out), so "we may use
your data to train AI models" in a FAQ and "develop and train artificial intelligence (AI)
models" in the policy are the same statement whatever their wording.

- `policy-lag`: one side (help, FAQ or settings pages; or the privacy policy and terms) said
  a statement at least `lag_threshold` before the other side did. Reported on the later change.
- `policy-silent`: a help page says it now and no policy document does, yet. Reported on the
  help page's latest change.

`report_signals` gives these per change for `monitor report` and `monitor show`: one timeline
per service that has a help page, however many of its changes the report shows.

Which document kinds are "policy" and which "help", and the threshold, are data
(monitor/data/service.yaml).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .extract import load_data

if TYPE_CHECKING:
    from .flags import RuleSet
    from .flags.statements import Statement
    from .records import Version
    from .store import Store
    from .targets import Config

Key = tuple[str, str, tuple[str, ...]]  # category, polarity, actors (the service itself left out)


@dataclass(frozen=True)
class Said:
    """When one document first made a statement."""

    key: Key
    target_id: str
    document: str
    side: str  # policy | help
    observed_at: str
    seq: int
    effective_date: str | None
    change_id: int | None  # the change that brought it (None: the document's first version)
    claim: str  # what it says, in plain words ("may use your data to train AI")
    evidence: str

    @property
    def day(self) -> str:
        return self.observed_at[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target_id, "document": self.document, "side": self.side, "observed_at": self.observed_at,
            "version": self.seq, "effective_date": self.effective_date, "change_id": self.change_id, "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Signal:
    kind: str  # policy-lag | policy-silent
    category: str
    claim: str
    first: Said
    later: Said | None
    days: float
    message: str

    @property
    def change_id(self) -> int | None:
        """The change the signal is reported on: the later side's, for a lag."""
        return self.later.change_id if self.later is not None else self.first.change_id

    def on_change(self) -> dict[str, Any]:
        """The signal as an entry of a change's `signals` (report JSON, `monitor show`): the
        other document, its date and the days between; for policy-silent, since when."""
        entry: dict[str, Any] = {"kind": self.kind, "message": self.message, "category": self.category, "claim": self.claim,
                                 "days": round(self.days, 1)}
        if self.later is not None:
            other = self.first
            entry["other"] = {"target": other.target_id, "document": other.document, "side": other.side, "date": other.day,
                              "observed_at": other.observed_at, "effective_date": other.effective_date,
                              "change_id": other.change_id, "evidence": other.evidence}
        else:
            entry["other"] = None  # no policy document says it
            entry["since"] = self.first.day
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "category": self.category, "claim": self.claim, "days": round(self.days, 1),
            "change_id": self.change_id, "message": self.message, "first": self.first.to_dict(),
            "later": self.later.to_dict() if self.later else None,
        }


@dataclass
class Event:
    """One version of one document, on the service's time axis."""

    observed_at: str
    target_id: str
    document: str
    seq: int
    effective_date: str | None
    provenance: str
    side: str | None = None  # policy | help | None
    change: dict[str, Any] | None = None  # id, summary, flags (category, severity, change, summary)
    signals: list[Signal] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed_at": self.observed_at, "target": self.target_id, "document": self.document, "version": self.seq,
            "effective_date": self.effective_date, "provenance": self.provenance, "side": self.side, "change": self.change,
            "signals": [s.to_dict() for s in self.signals],
        }


@dataclass
class Timeline:
    service: str
    lag_threshold: float
    documents: list[dict[str, Any]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service, "lag_threshold_days": self.lag_threshold / 86400, "documents": self.documents,
            "events": [e.to_dict() for e in self.events], "signals": [s.to_dict() for s in self.signals],
        }


def settings() -> dict[str, Any]:
    return load_data("service.yaml")


def side_of(document: str) -> str | None:
    data = settings()
    if document in data["policy_documents"]:
        return "policy"
    if document in data["help_documents"]:
        return "help"
    return None


def label(document: str) -> str:
    """How a reader names a document kind: "the privacy policy", "the help page"."""
    return {"privacy-policy": "the privacy policy", "terms": "the terms", "ai-policy": "the AI policy",
            "cookie-policy": "the cookie policy", "faq": "the help page", "other": "the help page"}.get(document, document)


def statement_key(st: Statement, own: str | None) -> Key:
    actors = tuple(sorted(a for a in st.actors if own is None or a.lower() != own.lower()))
    return (st.category, st.polarity, actors)


def read_keys(rules: RuleSet, store: Store, version: Version, own: str | None) -> dict[Key, Statement]:
    """The statements of a whole stored version, one per key (the first said)."""
    from .flags.statements import read_statements

    out: dict[Key, Statement] = {}
    for clause in store.document(version).clauses:
        for st in read_statements(rules, clause.text, clause.section_path or None, own=own):
            out.setdefault(statement_key(st, own), st)
    return out


def service_targets(store: Store, config: Config, service: str) -> list[dict[str, Any]]:
    """The service's targets: those in targets.yaml and those kept in the store only (an
    entry deleted from the file keeps its history). Matched case-insensitively."""
    rows = {row["id"]: row for row in store.db.query("select id, service, document, url from targets")}
    for target in config.targets:
        rows[target.id] = {"id": target.id, "service": target.service, "document": target.document, "url": target.url}
    chosen = [row for row in rows.values() if str(row["service"]).lower() == service.lower()]
    if not chosen:
        known = sorted({str(row["service"]) for row in rows.values()})
        raise InputError(f"no service {service!r} in targets.yaml or the database; known services: {', '.join(known) or 'none'}")
    return sorted(chosen, key=lambda row: (side_of(row["document"]) != "policy", row["id"]))


def build_timeline(store: Store, config: Config, service: str, rules: RuleSet, *, lag_threshold: float | None = None,
                   now: datetime | None = None) -> Timeline:
    from .report import ReportQuery, query_changes
    from .targets import parse_duration

    targets = service_targets(store, config, service)
    name = targets[0]["service"]
    threshold = parse_duration(settings()["lag_threshold"]) if lag_threshold is None else lag_threshold
    timeline = Timeline(name, threshold)
    ids = tuple(row["id"] for row in targets)
    rows = query_changes(store, ReportQuery(targets=ids, include_cosmetic=True), diff=True)
    by_new = {row["new_version_id"]: row for row in rows}
    firsts: dict[Key, list[Said]] = {}
    current: dict[str, dict[Key, Statement]] = {}  # each document's statements now
    for row in targets:
        versions = store.versions(row["id"])
        timeline.documents.append({
            "target": row["id"], "document": row["document"], "side": side_of(row["document"]), "url": row["url"],
            "versions": len(versions), "first": versions[0].observed_at if versions else None,
            "last": versions[-1].observed_at if versions else None,
        })
        side = side_of(row["document"])
        keys: dict[Key, Statement] = {}
        seen: set[Key] = set()
        for index, version in enumerate(versions):
            change = by_new.get(version.id)
            # A change with no flag left the statements as they were: read only where one changed.
            if index == 0 or change is None or change["n_flags"]:
                keys = read_keys(rules, store, version, name)
            timeline.events.append(Event(
                version.observed_at, row["id"], row["document"], version.seq, version.effective_date, version.provenance, side,
                _change_view(change) if change is not None and index > 0 else None,
            ))
            for key, st in keys.items():
                if key in seen or side is None:
                    continue
                seen.add(key)
                firsts.setdefault(key, []).append(Said(
                    key, row["id"], row["document"], side, version.observed_at, version.seq, version.effective_date,
                    change["id"] if change is not None and index > 0 else None, _claim(st), " ".join(st.evidence.split()),
                ))
        current[row["id"]] = keys if versions else {}
    timeline.events.sort(key=lambda e: (e.observed_at, e.target_id))
    timeline.signals = signals(firsts, current, targets, threshold, now=now)
    by_change = {e.change["id"]: e for e in timeline.events if e.change}
    for signal in timeline.signals:
        event = by_change.get(signal.change_id) if signal.change_id is not None else None
        if event is None:  # said in a first version: the signal goes on that version
            said = signal.later or signal.first
            event = next((e for e in timeline.events if e.target_id == said.target_id and e.seq == said.seq), None)
        if event is not None:
            event.signals.append(signal)
    return timeline


def signals_by_change(timeline: Timeline) -> dict[int, list[Signal]]:
    """A timeline's signals keyed by the change each is reported on: a lag on the later
    side's change; policy-silent on the help page's latest substantive change (its latest
    change when none is substantive), where a reader of the newest change sees it."""
    latest: dict[str, int] = {}
    for event in timeline.events:  # in time order: the last one kept is the latest
        if event.change is not None and (event.change["substantive"] or event.target_id not in latest):
            latest[event.target_id] = event.change["id"]
    out: dict[int, list[Signal]] = {}
    for signal in timeline.signals:
        change_id = latest.get(signal.first.target_id) if signal.kind == "policy-silent" else signal.change_id
        if change_id is not None:
            out.setdefault(change_id, []).append(signal)
    return out


def report_signals(store: Store, config: Config, changes: Iterable[dict[str, Any]], *, rules: RuleSet | None = None,
                   now: datetime | None = None) -> dict[int, list[dict[str, Any]]]:
    """The policy-lag and policy-silent entries of these changes (rows with `id` and `service`),
    keyed by change id. One timeline per service, and only for a service with a help page
    (no other can have either signal), so a report of 10,000 policy changes reads no text."""
    services = {str(row["service"]) for row in changes if row.get("service")}
    if not services:
        return {}
    help_kinds = set(settings()["help_documents"])
    with_help = {str(row["service"]).lower() for row in store.db.query("select service, document from targets") if row["document"] in help_kinds}
    with_help |= {t.service.lower() for t in config.targets if t.document in help_kinds}
    wanted = sorted(s for s in services if s.lower() in with_help)
    if not wanted:
        return {}
    if rules is None:
        from .flags import load_rules

        rules = load_rules(strict=False)
    out: dict[int, list[dict[str, Any]]] = {}
    for service in wanted:
        for change_id, found in signals_by_change(build_timeline(store, config, service, rules, now=now)).items():
            out[change_id] = [signal.on_change() for signal in found]
    return out


def _claim(st: Statement) -> str:
    from .flags.compare import claim

    return claim(st)


def _change_view(row: dict[str, Any]) -> dict[str, Any]:
    flags = []
    for clause in json.loads(row.get("diff") or "{}").get("changes", []):
        for flag in clause.get("flags", []):
            flags.append({k: flag.get(k) for k in ("category", "severity", "change", "summary", "evidence")})
    return {
        "id": row["id"], "summary": row["summary"], "substantive": bool(row["substantive"]),
        "categories": [c for c in (row["categories"] or "").split(",") if c], "max_severity": row["max_severity"], "flags": flags,
    }


def signals(firsts: dict[Key, list[Said]], current: dict[str, dict[Key, Statement]], targets: Sequence[dict[str, Any]],
            threshold: float, *, now: datetime | None = None) -> list[Signal]:
    """`policy-lag` for each statement one side said at least `threshold` before the other;
    `policy-silent` for each statement a help page says now and no policy document says."""
    now = now or datetime.now(timezone.utc)
    policy_ids = [row["id"] for row in targets if side_of(row["document"]) == "policy"]
    out: list[Signal] = []
    for key, said in firsts.items():
        help_first = _earliest(s for s in said if s.side == "help")
        policy_first = _earliest(s for s in said if s.side == "policy")
        if help_first and policy_first:
            first, later = sorted((help_first, policy_first), key=lambda s: s.observed_at)
            seconds = (_when(later.observed_at) - _when(first.observed_at)).total_seconds()
            days = seconds / 86400
            # Said in the later document's first stored version: it may have said it long before
            # it was watched, so no lag can be claimed.
            if seconds >= threshold and later.change_id is not None:
                stated = f" (stated date {later.effective_date})" if later.effective_date and later.effective_date != later.day else ""
                message = (
                    f"{label(first.document)} ({first.target_id}) said it on {first.day}; "
                    f"{label(later.document)} ({later.target_id}) said it on {later.day}{stated}, {days:.0f} days later: "
                    f"it {later.claim}"
                )
                out.append(Signal("policy-lag", key[0], later.claim, first, later, days, message))
        elif help_first and policy_ids:
            says_now = [s for s in said if s.side == "help" and key in current.get(s.target_id, {})]
            if says_now and not any(key in current.get(pid, {}) for pid in policy_ids):
                lead = _earliest(says_now)
                assert lead is not None
                days = (now - _when(lead.observed_at)).total_seconds() / 86400
                message = (
                    f"{label(lead.document)} ({lead.target_id}) has said it since {lead.day} ({days:.0f} days); "
                    f"no policy document of the service says it yet: it {lead.claim}"
                )
                out.append(Signal("policy-silent", key[0], lead.claim, lead, None, days, message))
    out.sort(key=lambda s: (s.kind, (s.later or s.first).observed_at, s.category))
    return out


def _earliest(said: Iterable[Said]) -> Said | None:
    return min(said, key=lambda s: s.observed_at, default=None)


def _when(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
