"""The tamper-evident ledger: every fact a report relies on, in one hash chain per store.

Record format 2 (the `chain` table, one row per entry, appended in the same transaction as
the row it covers):

    position  1, 2, 3 ... (no gaps)
    kind      "version" | "change" | "supersede" | "evaluation"
    ref       id of the versions, changes or evaluations row the entry covers
    record    canonical JSON of the covered facts (keys sorted, no spaces, UTF-8), with "v": 2
    prev      hash of the entry before it (64 zeros for the first)
    hash      sha256(prev + "\\n" + record)

What each kind covers (see the *_record functions; every key is always present):
- version: target, seq, observed and recorded times, stated (effective) date, title,
  provenance and its reference, revert pointer, text sha256/bytes/clause count, every raw part
  (URL, sha256, path, content type, size; for live captures since issue 14 also the network
  response's headers file and body, and the screenshot tiles, each with its sha256) and the
  fetch that produced it (requested and final
  URL, status, content type, engine, browser, ETag, Last-Modified, times, raw sha256).
- change: the two versions (ids and seqs), detection and observation times, substantive,
  counts, categories, highest severity, signals, summary, the alerted flag, and the sha256 of
  the diff JSON (which holds every flag) and of the rendered clause HTML.
- supersede: a change marked superseded, and by which change.
- evaluation: a change's flags recomputed by `monitor reflag` (the change, when, the rules'
  digest, substantive, counts, categories, highest severity, summary, sha256 of the diff JSON).

The head ("N:hash" of the last entry) is kept in three places verify compares: meta
`chain_head` (same transaction), the daemon heartbeat, and every alert row (`alerts.chain_head`,
also sent as the X-Monitor-Chain header of each email). Deleting the tail leaves a head that
names an entry which no longer exists; `monitor verify --head N:HASH` checks a head copied from
an email or a log against the database.

The response headers and the screenshots needed no new format: they are files named in a
raw part's entry (`response`, `screenshots`), and the record holds the `raws` list whole, so
their digests are covered as the capture's is; older versions simply have no such keys.

Extending the format with another column: add the field to the record builder under a new
version number ("v": 3) for new entries only, keep the builder for 2, and choose the builder
by the stored record's "v"; old entries never change.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import StoreError

if TYPE_CHECKING:
    from .store import Store

FORMAT = 2
GENESIS = "0" * 64
FETCH_FIELDS = (
    "requested_url", "final_url", "status", "content_type", "engine", "browser_version", "etag",
    "last_modified", "started_at", "finished_at", "raw_sha256",
)
VERSION_FIELDS = (
    "target_id", "seq", "observed_at", "recorded_at", "effective_date", "title", "provenance", "provenance_ref",
    "reverted_to", "text_sha256", "text_path", "text_bytes", "clause_count",
)
CHANGE_FIELDS = (
    "target_id", "old_version_id", "new_version_id", "old_seq", "new_seq", "detected_at", "observed_at",
    "substantive", "n_changes", "n_flags", "categories", "max_severity", "summary", "alerted", "html_version",
)


@dataclass(frozen=True)
class VerifyProblem:
    severity: str  # "error" breaks the promise; "note" is harmless (an orphan file)
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev: str, record_text: str) -> str:
    return hashlib.sha256(f"{prev}\n{record_text}".encode()).hexdigest()


def _sha(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------- records


def version_record(row: dict[str, Any], fetch: dict[str, Any] | None) -> dict[str, Any]:
    record: dict[str, Any] = {"v": FORMAT, "kind": "version", **{k: row[k] for k in VERSION_FIELDS}}
    record["raws"] = json.loads(row["raws"] or "[]")
    record["fetch"] = {k: fetch[k] for k in FETCH_FIELDS} if fetch else None
    return record


def change_record(row: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"v": FORMAT, "kind": "change", **{k: row[k] for k in CHANGE_FIELDS}}
    record["signals"] = json.loads(row["signals"] or "[]")
    record["diff_sha256"] = _sha(row["diff"])
    record["html_sha256"] = _sha(row["html"])
    return record


EVALUATION_FIELDS = (
    "change_id", "evaluated_at", "rules", "substantive", "n_changes", "n_flags", "categories", "max_severity", "summary",
)


def evaluation_record(row: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"v": FORMAT, "kind": "evaluation", **{k: row[k] for k in EVALUATION_FIELDS}}
    record["diff_sha256"] = _sha(row["diff"])
    return record


def supersede_record(row: dict[str, Any]) -> dict[str, Any]:
    return {"v": FORMAT, "kind": "supersede", "change_id": row["id"], "superseded_by": row["superseded_by"]}


def _row(store: Store, table: str, row_id: int | None) -> dict[str, Any] | None:
    if row_id is None:
        return None
    rows = list(store.db.query(f"select * from {table} where id = ?", [row_id]))  # noqa: S608 - fixed names
    return rows[0] if rows else None


def record_of(store: Store, kind: str, ref: int) -> dict[str, Any] | None:
    """The record the rows hold now (None if the covered row is gone)."""
    if kind == "version":
        row = _row(store, "versions", ref)
        return version_record(row, _row(store, "fetches", row["fetch_id"])) if row else None
    if kind == "evaluation":
        row = _row(store, "evaluations", ref)
        return evaluation_record(row) if row else None
    if kind == "purge":  # monitor/purge.py: a target's history deleted on request
        row = _row(store, "purges", ref) if "purges" in store.db.table_names() else None
        return {"v": FORMAT, "kind": "purge", **{k: row[k] for k in ("target_id", "purged_at", "versions", "changes", "positions")}} if row else None
    row = _row(store, "changes", ref)
    if row is None:
        return None
    return change_record(row) if kind == "change" else supersede_record(row)


# ----------------------------------------------------------------------------- writing


def create_table(store: Store) -> None:
    store.db.execute(
        "create table if not exists chain (position integer primary key, kind text not null, ref integer not null, "
        "target_id text, record text not null, prev text not null, hash text not null)"
    )
    store.db.execute("create index if not exists chain_ref on chain (kind, ref)")


def head(store: Store) -> str:
    """'N:hash' of the last entry ('0:000...' for an empty chain)."""
    rows = list(store.db.query("select position, hash from chain order by position desc limit 1"))
    return f"{rows[0]['position']}:{rows[0]['hash']}" if rows else f"0:{GENESIS}"


def append(store: Store, kind: str, ref: int) -> tuple[str, str]:
    """Add the entry for one row, inside the caller's write transaction. Returns (prev, hash)."""
    record = record_of(store, kind, ref)
    assert record is not None, f"{kind} {ref} is not stored"
    last = list(store.db.query("select position, hash from chain order by position desc limit 1"))
    position, prev = (last[0]["position"] + 1, last[0]["hash"]) if last else (1, GENESIS)
    text = canonical(record)
    digest = entry_hash(prev, text)
    target_id = record.get("target_id")
    store.db.execute(
        "insert into chain (position, kind, ref, target_id, record, prev, hash) values (?, ?, ?, ?, ?, ?, ?)",
        [position, kind, ref, target_id, text, prev, digest],
    )
    store.db["meta"].upsert({"key": "chain_head", "value": f"{position}:{digest}"}, pk="key")
    return prev, digest


# ----------------------------------------------------------------------------- verifying


def verify_chain(store: Store, *, heads: list[tuple[str, str]] | None = None) -> list[VerifyProblem]:
    """Every entry linked and matching the rows it covers; every row covered; every copy of
    the head naming an entry that exists. `heads` are extra (where, 'N:hash') to compare."""
    problems: list[VerifyProblem] = []
    prev, position = GENESIS, 0
    covered: dict[str, set[int]] = {"version": set(), "change": set(), "supersede": set(), "evaluation": set()}
    hashes: dict[int, str] = {}
    for entry in store.db.query("select * from chain order by position"):
        position += 1
        where = f"chain entry {entry['position']}"
        if entry["position"] != position:
            problems.append(VerifyProblem("error", where, f"entries missing before it (expected position {position})"))
            position = entry["position"]
        if entry["prev"] != prev:
            problems.append(VerifyProblem("error", where, "chain broken: prev does not match the previous entry's hash"))
        if entry_hash(entry["prev"], entry["record"]) != entry["hash"]:
            problems.append(VerifyProblem("error", where, "chain hash does not match its record (the entry was edited)"))
        prev = entry["hash"]
        hashes[entry["position"]] = entry["hash"]
        covered.setdefault(entry["kind"], set()).add(entry["ref"])
        problems.extend(_compare_record(store, entry))
    for row in store.db.query("select id, target_id, seq from versions"):
        if row["id"] not in covered["version"]:
            problems.append(VerifyProblem("error", f"{row['target_id']}@{row['seq']}", "version not in the hash chain (a row was added)"))
    for row in store.db.query("select id, superseded_by from changes"):
        if row["id"] not in covered["change"]:
            problems.append(VerifyProblem("error", f"change {row['id']}", "change not in the hash chain (a row was added)"))
        if (row["superseded_by"] is not None) != (row["id"] in covered["supersede"]):
            problems.append(VerifyProblem("error", f"change {row['id']}", "superseded mark does not match the hash chain"))
    if "evaluations" in store.db.table_names():
        for row in store.db.query("select id, change_id from evaluations"):
            if row["id"] not in covered["evaluation"]:
                problems.append(VerifyProblem("error", f"evaluation {row['id']} of change {row['change_id']}", "evaluation not in the hash chain (a row was added)"))
    meta = store.get_meta("chain_head")
    copies = [("meta chain_head", meta)] if meta else []
    if not meta and position:
        problems.append(VerifyProblem("error", "meta chain_head", "missing: the chain's head was removed"))
    copies += _heartbeat_head(store)
    copies += [(f"alert {r['id']}", r["chain_head"]) for r in store.db.query("select id, chain_head from alerts where chain_head is not null")]
    copies += heads or []
    for where, value in copies:
        problems.extend(_check_head(where, value, hashes, position, exact=where == "meta chain_head"))
    return problems


def _compare_record(store: Store, entry: dict[str, Any]) -> list[VerifyProblem]:
    stored = json.loads(entry["record"])
    label = f"{entry['kind']} {entry['ref']}"
    if stored.get("v") != FORMAT:  # a later format's builders go here, chosen by "v"
        return [VerifyProblem("error", f"chain entry {entry['position']}", f"record format {stored.get('v')} is unknown to this monitor (it knows {FORMAT})")]
    now = record_of(store, entry["kind"], entry["ref"])
    if now is None:
        from .purge import purged_positions

        purged = purged_positions(store).get(entry["position"])
        if purged:
            return [VerifyProblem("note", label, f"deleted on request ({purged}; `monitor remove --purge`)")]
        return [VerifyProblem("error", label, f"row deleted (chain entry {entry['position']} covers it)")]
    if entry["kind"] == "version":
        label = f"{now['target_id']}@{now['seq']}"
    differ = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if not differ:
        return []
    return [VerifyProblem("error", label, f"chain hash does not match the recorded content (a row was edited): {', '.join(differ)} differ from chain entry {entry['position']}")]


def _heartbeat_head(store: Store) -> list[tuple[str, str]]:
    raw = store.get_meta("heartbeat")
    try:
        value = json.loads(raw).get("chain") if raw else None
    except (ValueError, AttributeError):
        return [("heartbeat", "unreadable")]
    return [("heartbeat", value)] if value else []


def _check_head(where: str, value: str, hashes: dict[int, str], last: int, *, exact: bool) -> list[VerifyProblem]:
    number, _, digest = value.partition(":")
    if not number.isdigit() or len(digest) != 64:
        return [VerifyProblem("error", where, f"head {value[:80]!r} is not N:SHA256")]
    n = int(number)
    if n > last:
        return [VerifyProblem("error", where, f"names chain entry {n} but the chain ends at {last}: its tail was deleted")]
    if n and hashes.get(n) != digest:
        return [VerifyProblem("error", where, f"head {n}:{digest[:12]} does not match chain entry {n}: the chain was rewritten")]
    if exact and n != last:
        return [VerifyProblem("error", where, f"says the chain ends at {n}, but it holds {last} entries")]
    return []


def verify(store: Store, *, heads: list[tuple[str, str]] | None = None) -> list[VerifyProblem]:
    """Files against their digests, then the chain (see verify_chain); all faults reported."""
    problems: list[VerifyProblem] = []
    referenced: set[str] = set()
    for row in store.db.query("select * from versions order by target_id, seq"):
        where = f"{row['target_id']}@{row['seq']}"
        for raw in json.loads(row["raws"] or "[]"):
            for rel, sha in raw_files(raw):
                referenced.add(rel)
                problems.extend(_check_file(store, where, rel, sha, compressed=rel.endswith(".gz")))
        text_file, compressed = store.text_file(row["text_path"])
        text_rel = text_file.relative_to(store.snapshots_dir).as_posix()
        referenced.add(text_rel)
        problems.extend(_check_file(store, where, text_rel, row["text_sha256"], compressed=compressed))
    problems.extend(verify_chain(store, heads=heads))
    for row in store.db.query(
        "select c.id from changes c left join versions o on o.id = c.old_version_id "
        "left join versions n on n.id = c.new_version_id where o.id is null or n.id is null"
    ):
        problems.append(VerifyProblem("error", f"change {row['id']}", "refers to a version that does not exist"))
    if store.snapshots_dir.exists():
        for path in sorted(store.snapshots_dir.rglob("*")):
            if not path.is_file() or path.name == "README.md":
                continue
            rel = path.relative_to(store.snapshots_dir).as_posix()
            if path.name.endswith(".tmp"):
                problems.append(VerifyProblem("note", rel, "left-over temporary file from an interrupted write (safe to delete)"))
            elif rel not in referenced:
                problems.append(VerifyProblem("note", rel, "file not referenced by any version (an interrupted capture; harmless)"))
    return problems


def raw_files(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, sha256) of every file one raw part of a version names: the capture, the
    network exchange's headers file and body, the screenshot tiles."""
    files = [(raw["path"], raw["sha256"])]
    response = raw.get("response")
    if response:
        files += [(response["path"], response["sha256"]), (response["body_path"], response["body_sha256"])]
    files += [(shot["path"], shot["sha256"]) for shot in raw.get("screenshots") or ()]
    return files


def _check_file(store: Store, where: str, rel: str, sha: str, *, compressed: bool) -> list[VerifyProblem]:
    path = store.snapshots_dir / rel
    try:
        data = path.read_bytes()
        if compressed:
            data = gzip.decompress(data)
    except FileNotFoundError:
        return [VerifyProblem("error", where, f"file missing: {rel}")]
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        return [VerifyProblem("error", where, f"file unreadable: {rel} ({exc})")]
    if hashlib.sha256(data).hexdigest() != sha:
        return [VerifyProblem("error", where, f"content of {rel} does not match its recorded sha256 (modified or corrupted)")]
    return []


# ----------------------------------------------------------------------------- migration


def legacy_hash(prev: str, target_id: str, seq: int, observed_at: str, raws: list[dict[str, Any]], text_sha: str) -> str:
    """Format 1: per target, over ids, times and digests only (kept to verify before migrating)."""
    payload = "\n".join((prev, target_id, str(seq), observed_at, ",".join(r["sha256"] for r in raws), text_sha))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def legacy_problems(store: Store) -> list[str]:
    problems: list[str] = []
    last: dict[str, tuple[int, str]] = {}
    for row in store.db.query("select * from versions order by target_id, seq"):
        where = f"{row['target_id']}@{row['seq']}"
        seq, prev = last.get(row["target_id"], (0, GENESIS))
        if row["seq"] != seq + 1:
            problems.append(f"{where}: version numbers jump (expected {seq + 1})")
        if row["prev_chain"] != prev:
            problems.append(f"{where}: chain broken")
        expected = legacy_hash(row["prev_chain"], row["target_id"], row["seq"], row["observed_at"], json.loads(row["raws"] or "[]"), row["text_sha256"])
        if row["chain_hash"] != expected:
            problems.append(f"{where}: chain hash does not match the recorded content")
        last[row["target_id"]] = (row["seq"], row["chain_hash"])
    return problems


def migrate_from_1(store: Store) -> None:
    """Format 1 -> 2, once, inside the caller's write transaction. Refuses (StoreError, nothing
    changed) unless the format-1 chain verifies: re-hashing forged rows would bless them."""
    problems = legacy_problems(store)
    if problems:
        raise StoreError(
            f"{store.db_path}: the hash chain (format 1) does not verify, so it is not migrated to format 2: "
            f"{len(problems)} problem(s), first: {problems[0]}; restore the database from a backup"
        )
    create_table(store)
    if "chain_head" not in store.db["alerts"].columns_dict:
        store.db.execute("alter table alerts add column chain_head text")
    entries = [("version", r["id"], r["recorded_at"] or r["observed_at"]) for r in store.db.query("select id, recorded_at, observed_at from versions")]
    entries += [("change", r["id"], r["detected_at"]) for r in store.db.query("select id, detected_at from changes")]
    entries.sort(key=lambda e: (e[2] or "", e[0] == "change", e[1]))  # history in recording order
    for kind, ref, _ in entries:
        _relink(store, kind, ref)
    for row in store.db.query("select id from changes where superseded_by is not null order by id"):
        append(store, "supersede", row["id"])


def _relink(store: Store, kind: str, ref: int) -> None:
    prev, digest = append(store, kind, ref)
    if kind == "version":
        store.db.execute("update versions set prev_chain = ?, chain_hash = ? where id = ?", [prev, digest, ref])
