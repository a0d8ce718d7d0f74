"""Deleting a target's stored history for good (`monitor remove --purge`), on the record.

Evidence is deleted only when the user asks, and the deletion itself becomes evidence: a
`purges` row names the target, when, what was deleted and exactly which hash-chain entries
covered it, and is appended to the chain like any fact. `monitor verify` then reports those
entries as purged (a note) instead of as rows deleted behind its back, and any other
missing row still as an error.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

from . import chain
from .errors import InputError
from .records import utcnow

if TYPE_CHECKING:
    from .store import Store


def create_table(store: Store) -> None:
    """Idempotent: the table appears with the first purge (the schema version is unchanged)."""
    store.db.execute(
        "create table if not exists purges (id integer primary key, target_id text not null, purged_at text not null, "
        "versions integer not null, changes integer not null, positions text not null)"
    )


def purged_positions(store: Store) -> dict[int, str]:
    """Chain positions of purged rows -> the purge that removed them ("target on date")."""
    if "purges" not in store.db.table_names():
        return {}
    out: dict[int, str] = {}
    for row in store.db.query("select * from purges"):
        for position in json.loads(row["positions"]):
            out[int(position)] = f"{row['target_id']} purged {row['purged_at']}"
    return out


def purge_target(store: Store, target_id: str) -> dict[str, int]:
    """Delete every stored row and file of one target, in one transaction, and record it."""
    db = store.db
    versions = [r["id"] for r in db.query("select id from versions where target_id = ?", [target_id])]
    changes = [r["id"] for r in db.query("select id from changes where target_id = ?", [target_id])]
    known = db.execute("select count(*) from targets where id = ?", [target_id]).fetchone()[0]
    if not known and not versions:
        raise InputError(f"{target_id}: nothing stored for this id; check it with `monitor targets` or `monitor status`")
    folder = store.snapshots_dir / target_id
    files = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
    with store.write():
        create_table(store)
        marks_v = ", ".join("?" for _ in versions) or "null"
        marks_c = ", ".join("?" for _ in changes) or "null"
        evaluations = [r["id"] for r in db.query(f"select id from evaluations where change_id in ({marks_c})", changes)]  # noqa: S608
        marks_e = ", ".join("?" for _ in evaluations) or "null"
        positions = [r["position"] for r in db.query(
            f"select position from chain where (kind = 'version' and ref in ({marks_v})) "  # noqa: S608 - placeholders only
            f"or (kind in ('change', 'supersede') and ref in ({marks_c})) or (kind = 'evaluation' and ref in ({marks_e})) order by position",
            [*versions, *changes, *evaluations],
        )]
        db.execute(f"delete from evaluations where id in ({marks_e})", evaluations)  # noqa: S608
        db.execute("delete from alerts where target_id = ?", [target_id])
        db.execute("delete from changes where target_id = ?", [target_id])
        db.execute("delete from fetches where target_id = ?", [target_id])
        db.execute("delete from versions where target_id = ?", [target_id])
        db.execute("delete from targets where id = ?", [target_id])
        cursor = db.execute(
            "insert into purges (target_id, purged_at, versions, changes, positions) values (?, ?, ?, ?, ?)",
            [target_id, utcnow(), len(versions), len(changes), json.dumps(positions)],
        )
        chain.append(store, "purge", int(cursor.lastrowid))
    if folder.exists():
        shutil.rmtree(folder)  # after the commit: a crash before it leaves files, which verify calls harmless
    return {"versions": len(versions), "changes": len(changes), "files": files}
