"""Failure alerts that do not flood: when many targets fail alike at once, it is this
machine's network (or a shared service) that is down, not the pages, and one alert says so.

The test is made after every check, inside the check's transaction, from the targets table
(each target's last check and the kind of its last error): when at least `min_targets`
targets, and at least `fraction` of those checked within `window`, last failed with the same
kind, an outage of that kind opens (one alert naming the count and kind); while it is open,
a target of that kind entering the failing state is muted (no alert of its own); it ends once
a check in the window succeeds and the test no longer holds (one alert). A muted target still
failing then is decided by its next check: a success recovers it quietly, a failure is an
isolated one and gets its own failing alert (held, below: if the target is back within the
grace, it was the outage's tail, and neither that alert nor its recovery is sent).

Targets that fail together cross their failure thresholds a little apart (a slow check, a
busy machine), so a target's own failing or recovered alert is queued `held` for `grace`
(`hold`): an outage of its kind declared meanwhile absorbs it (the row is marked `absorbed`,
never sent, and the target is muted as if the outage had come first); so does the end of an
outage for a held recovered alert. Otherwise the sender releases it when the grace is over
(monitor.alerts.release_held), and `monitor check` at the end of its pass.

Open outages are kept in the meta table (`outage:<kind>`, and the targets left to decide in
`outage-left`), so they survive a restart and two checking processes see the same ones.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import FAILURE_KINDS
from .store import parse_timestamp, to_timestamp, utcnow

if TYPE_CHECKING:
    from .store import Store
    from .targets import Config

META_PREFIX = "outage:"
LEFT_KEY = "outage-left"  # target id -> kind: muted, still failing when its outage ended
TRAILING_KEY = "outage-trailing"  # target id -> kind: failed again after its outage ended, alert held
MAX_LISTED = 50  # target ids carried in an alert


def open_outages(store: Store) -> dict[str, dict[str, Any]]:
    """kind -> the open outage's record (opened_at, failing, checked, muted)."""
    rows = store.db.execute("select key, value from meta where key like ?", [f"{META_PREFIX}%"]).fetchall()
    return {key[len(META_PREFIX):]: json.loads(value) for key, value in rows if value}


def _save(store: Store, kind: str, record: dict[str, Any] | None) -> None:
    key = META_PREFIX + kind
    if record is None:
        store.db.execute("delete from meta where key = ?", [key])
    else:
        store.db.execute("insert or replace into meta (key, value) values (?, ?)", [key, json.dumps(record)])


def _left(store: Store, key: str = LEFT_KEY) -> dict[str, str]:
    row = store.db.execute("select value from meta where key = ?", [key]).fetchone()
    return json.loads(row[0]) if row and row[0] else {}


def _save_left(store: Store, left: dict[str, str], key: str = LEFT_KEY) -> None:
    store.db.execute("insert or replace into meta (key, value) values (?, ?)", [key, json.dumps(left, sort_keys=True)])


def hold(config: Config, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A target's own failing/recovered rows, queued `held` until the grace is over."""
    grace = config.alerts.outage.grace
    if grace <= 0 or not rows:
        return rows
    now = utcnow()
    until = to_timestamp(parse_timestamp(now) + timedelta(seconds=grace))
    note = f"held until {until[:19].replace('T', ' ')}: left out if an outage of its kind is declared by then"
    return [{**row, "created_at": now, "state": "held", "next_attempt_at": until, "last_error": note} for row in rows]


def _absorb(store: Store, change: str, targets: set[str], note: str) -> list[str]:
    """Mark the held `change` rows of these targets absorbed (never sent); their target ids."""
    held = store.db.execute("select id, target_id from alerts where state = 'held' and kind = ?", [change]).fetchall()
    hit = [(alert_id, tid) for alert_id, tid in held if tid in targets]
    for alert_id, _ in hit:
        store.db.execute(
            "update alerts set state = 'absorbed', next_attempt_at = null, last_error = ? where id = ? and state = 'held'", [note, alert_id],
        )
    return sorted({tid for _, tid in hit})


def _last_failure_kinds(store: Store, targets: set[str]) -> dict[str, str]:
    """target id -> the kind of its last failed fetch (a recovered target's is no longer in targets)."""
    kinds: dict[str, str] = {}
    for tid in targets:
        row = store.db.execute(
            "select error_kind from fetches where target_id = ? and error_kind is not null order by started_at desc limit 1", [tid],
        ).fetchone()
        if row:
            kinds[tid] = row[0]
    return kinds


def describe(kind: str) -> str:
    """'network (the connection failed or was cut)'."""
    meaning = FAILURE_KINDS.get(kind, ("", False))[0]
    return f"{kind} ({meaning})" if meaning else kind


def assess(store: Store, config: Config, target_id: str) -> list[dict[str, Any]]:
    """Open or close outages after a check of `target_id` (inside its write transaction).
    Returns the outbox rows to queue: an `outage` or `outage-recovered` alert, or the target's
    own failing alert when it still fails after its outage ended."""
    from .alerts import plan_outage_alerts, plan_state_alerts

    settings = config.alerts.outage
    now = utcnow()
    since = to_timestamp(parse_timestamp(now) - timedelta(seconds=settings.window))
    checked = store.db.execute(
        "select id, last_error_kind, state from targets where last_fetch_at >= ?", [since]
    ).fetchall()
    failing = Counter(kind for _, kind, _ in checked if kind)
    succeeded = any(kind is None for _, kind, _ in checked)

    def holds(kind: str) -> bool:
        n = failing[kind]
        return n >= settings.min_targets and n >= settings.fraction * len(checked)

    rows: list[dict[str, Any]] = []
    current = open_outages(store)
    for kind in sorted(failing):
        if kind in current or not holds(kind):
            continue
        ids = sorted(tid for tid, k, _ in checked if k == kind)
        # those that crossed their threshold just before: their held failing alerts are this one
        absorbed = _absorb(store, "failing", set(ids), f"absorbed into the {kind} outage alert of {now[:19].replace('T', ' ')}")
        current[kind] = {"opened_at": now, "failing": len(ids), "checked": len(checked), "muted": absorbed}
        _save(store, kind, current[kind])
        rows += plan_outage_alerts(config.alerts, "outage", {"outage": {
            "kind": kind, "meaning": describe(kind), "failing": len(ids), "checked": len(checked),
            "window": settings.window, "since": now, "targets": ids[:MAX_LISTED],
        }})
    left = _left(store)
    before = dict(left)
    decided = target_id in left  # its check since the outage ended decides it, below
    for kind, record in list(current.items()):
        if failing[kind] > record.get("failing", 0):  # the most at once, for the closing alert
            record["failing"] = failing[kind]
            _save(store, kind, record)
        if holds(kind) or not succeeded:
            continue
        _save(store, kind, None)
        del current[kind]
        states = dict(store.db.execute("select id, state from targets").fetchall())
        still = sorted(t for t in record.get("muted", []) if states.get(t) == "failing")
        left.update({t: kind for t in still})
        held = {t for (t,) in store.db.execute("select target_id from alerts where state = 'held' and kind = 'recovered'").fetchall()}
        alike = {t for t, k in _last_failure_kinds(store, held).items() if k == kind}
        recovered = _absorb(store, "recovered", alike, f"absorbed into the {kind} outage-over alert of {now[:19].replace('T', ' ')}")
        rows += plan_outage_alerts(config.alerts, "outage-recovered", {"outage": {
            "kind": kind, "meaning": describe(kind), "failing": record.get("failing"), "since": record.get("opened_at"),
            "until": now, "waiting": still[:MAX_LISTED], "recovered": recovered[:MAX_LISTED],
        }})
    if decided:
        row = store.db.execute("select last_error_kind from targets where id = ?", [target_id]).fetchone()
        error = row[0] if row else None
        if error:  # failed again: an isolated failure now, or part of a new outage
            kind = left.pop(target_id)
            if error in current:
                current[error]["muted"] = sorted({*current[error]["muted"], target_id})
                _save(store, error, current[error])
            else:
                known = {t.id: t for t in config.targets}
                if target_id in known:  # held: servers that come back one by one are the outage's tail
                    rows += hold(config, plan_state_alerts(config.alerts, known[target_id], "failing", f"{error}: still failing after the {kind} outage ended"))
                    trailing = _left(store, TRAILING_KEY)
                    _save_left(store, {**trailing, target_id: kind}, TRAILING_KEY)
        # a success is left to muted(): the recovery it brings is the quiet end of this one
    if left != before:
        _save_left(store, left)
    return rows


def muted(store: Store, target_id: str, change: str) -> bool:
    """Whether a target's failing/recovered alert is left out because an outage covers it.
    Entering `failing` with the kind of an open outage mutes it (and records that); its
    recovery is then muted too while the outage is open."""
    current = open_outages(store)
    if change == "failing":
        row = store.db.execute("select last_error_kind from targets where id = ?", [target_id]).fetchone()
        kind = row[0] if row else None
        record = current.get(kind or "")
        if record is None:
            return False
        record["muted"] = sorted({*record.get("muted", []), target_id})
        _save(store, kind, record)
        return True
    trailing = _left(store, TRAILING_KEY)
    tail = trailing.pop(target_id, None)
    if tail is not None:
        _save_left(store, trailing, TRAILING_KEY)
    for kind, record in current.items():
        if target_id in record.get("muted", []):
            record["muted"] = [t for t in record["muted"] if t != target_id]
            _save(store, kind, record)
            return True
    left = _left(store)
    if target_id in left:  # muted, and still failing when its outage ended: recovers quietly
        del left[target_id]
        _save_left(store, left)
        return True
    # failed again after its outage ended, and back before that alert's grace was over: the
    # outage's tail, which the outage-over alert covers; neither alert is sent
    return tail is not None and bool(_absorb(store, "failing", {target_id}, f"absorbed: back within the grace after the {tail} outage ended"))
