"""Which versions and changes an export holds, read from the store and checked first.

CHANGE_ID: the change, its two versions and its re-evaluations. TARGET_ID: every version of
the target and every change between them. TARGET_ID@N: that version, and the change into it
with the version before. --all: every target. --since/--until keep the versions observed in
that window (and the changes into them, with their older side). Superseded changes stay out
(the changes a report shows); their chain entries are still part of the links.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import chain
from ..errors import InputError
from ..errors import TamperedError as StoreError

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class Selection:
    label: str  # what was asked for, in words: "change 14"
    name: str  # the default file name, without suffix
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: list[dict[str, Any]] = field(default_factory=list)  # version rows, by target then time
    fetches: dict[int, dict[str, Any]] = field(default_factory=dict)  # version id -> its fetch row
    changes: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    entries: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (kind, ref) -> chain row


def select(store: Store, spec: str | None, *, everything: bool = False, since: str | None = None, until: str | None = None) -> Selection:
    """The versions and changes `spec` names (see the module doc); InputError when none."""
    if everything == bool(spec):
        raise InputError("name one CHANGE_ID, TARGET_ID or TARGET_ID@N, or give --all")
    db = store.db
    change_ids: list[int] = []
    version_ids: set[int] = set()
    if spec and spec.isdigit():
        row = store.change(int(spec))
        selection = Selection(f"change {spec}", f"change-{spec}")
        change_ids = [row["id"]]
        version_ids = {row["old_version_id"], row["new_version_id"]}
    elif spec and "@" in spec:
        version = store.resolve(spec)
        selection = Selection(version.ref, version.ref)
        version_ids = {version.id}
        into = db.execute(
            "select id, old_version_id from changes where new_version_id = ? and superseded_by is null order by id desc limit 1", [version.id]
        ).fetchone()
        if into:
            change_ids, version_ids = [into[0]], {version.id, into[1]}
    else:
        if spec:
            if store.target_row(spec) is None:
                raise InputError(f"{spec}: no such target in the database (a change id is a number; a version is TARGET_ID@N)")
            targets = [spec]
            selection = Selection(f"target {spec}", spec)
        else:
            targets = [r["id"] for r in db.query("select id from targets order by id")]
            selection = Selection("every target", "archive")
        marks = ", ".join("?" for _ in targets) or "''"
        where, params = [f"target_id in ({marks})"], list(targets)
        if since:
            where.append("observed_at >= ?")
            params.append(since)
        if until:
            where.append("observed_at <= ?")
            params.append(until)
        version_ids = {r["id"] for r in db.query(f"select id from versions where {' and '.join(where)}", params)}  # noqa: S608
        if version_ids:
            vmarks = ", ".join("?" for _ in version_ids)
            for row in db.query(
                f"select id, old_version_id from changes where superseded_by is null and new_version_id in ({vmarks}) order by id",  # noqa: S608
                list(version_ids),
            ):
                change_ids.append(row["id"])
                version_ids.add(row["old_version_id"])
        if since or until:
            selection.label += f" observed {since or '…'} to {until or '…'}"
            selection.name += "-" + (since or "start")[:10] + "-" + (until or "now")[:10]
    if not version_ids:
        raise InputError(f"{selection.label}: no versions stored in that range; nothing to export")
    _load(store, selection, sorted(version_ids), change_ids)
    return selection


def _load(store: Store, selection: Selection, version_ids: list[int], change_ids: list[int]) -> None:
    db = store.db
    for chunk in _chunks(version_ids):
        marks = ", ".join("?" for _ in chunk)
        selection.versions += list(db.query(f"select * from versions where id in ({marks})", chunk))  # noqa: S608
    selection.versions.sort(key=lambda r: (r["target_id"], r["observed_at"], r["seq"]))
    for row in selection.versions:
        if row["fetch_id"] is not None:
            fetch = list(db.query("select * from fetches where id = ?", [row["fetch_id"]]))
            if fetch:
                selection.fetches[row["id"]] = fetch[0]
        if row["target_id"] not in selection.targets:
            selection.targets[row["target_id"]] = store.target_row(row["target_id"]) or {"id": row["target_id"]}
    for change_id in change_ids:
        selection.changes.append(store.change(change_id))
        selection.evaluations += list(db.query("select * from evaluations where change_id = ? order by id", [change_id]))
    wanted = [("version", r["id"]) for r in selection.versions] + [("change", r["id"]) for r in selection.changes]
    wanted += [("evaluation", r["id"]) for r in selection.evaluations]
    for kind, ref in wanted:
        rows = list(db.query("select * from chain where kind = ? and ref = ? order by position desc limit 1", [kind, ref]))
        if not rows:
            raise StoreError(f"{kind} {ref} is not in the hash chain; run `monitor verify`")
        entry = rows[0]
        now = chain.record_of(store, kind, ref)
        if now is None or json.loads(entry["record"]) != now:
            raise StoreError(f"{kind} {ref}: the database no longer matches its hash-chain entry {entry['position']}; "
                             "run `monitor verify` (nothing exported)")
        selection.entries[(kind, ref)] = entry


def chain_part(store: Store, selection: Selection) -> dict[str, Any]:
    """The chain entries that cover the bundle's rows, and every link (position, prev, hash)
    from the first of them to the head: enough to recompute each entry's hash and to see
    that each is an ancestor of the head (and of any head anchored since)."""
    entries = sorted(selection.entries.values(), key=lambda e: e["position"])
    first = entries[0]["position"] if entries else 1
    links = [[r[0], r[1], r[2]] for r in store.db.execute("select position, prev, hash from chain where position >= ? order by position", [first])]
    head = f"{links[-1][0]}:{links[-1][2]}" if links else chain.head(store)
    return {
        "head": head,
        "entries": [{k: e[k] for k in ("position", "kind", "ref", "record", "prev", "hash")} for e in entries],
        "links": links,
    }


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
