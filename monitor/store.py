"""Every capture, kept: SQLite (through sqlite-utils) plus content-addressed files.

Layout on disk (`snapshots/` by default):

    snapshots/<target-id>/<sha256>.<ext>.gz   raw capture (HTML, PDF, Markdown), compressed
    snapshots/<target-id>/<sha256>.md.gz      extracted text (the stable Markdown rendering), compressed

A version's `text_path` names the text as `<target-id>/<sha256>.md` (the name the hash chain
records); the file is that name plus `.gz`. Stores written before texts were compressed are
migrated when opened (each `.md` compressed to `.md.gz`, no row changed), so what `verify`
proves is the same: the sha256 is of the text itself, not of its compressed form.

Files are named by the sha256 of their content, so identical content is stored once. They are
written to a temporary name, fsynced and renamed, and only then is the database row committed
in one transaction: a kill -9 at any moment leaves either a whole version or none (at worst an
unreferenced file, which `verify` reports as a note, not a fault).

Tamper evidence: each version records the sha256 of its raw and text files, and every version,
change and supersede mark is an entry of one hash chain whose head is kept where `verify`
compares it (monitor/chain.py documents the record format). `verify` recomputes all of it.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import chain, schema
from .chain import GENESIS, VerifyProblem
from .errors import InputError, StoreError
from .files import write_atomic
from .records import (  # noqa: F401 - the records are re-exported: callers import them from here
    Candidate,
    ChangePlan,
    CheckOutcome,
    Committed,
    Exchange,
    FetchRecord,
    Planner,
    RawPart,
    Shot,
    Version,
    parse_timestamp,
    sha256_bytes,
    to_timestamp,
    utcnow,
)
from .schema import SCHEMA_VERSION

if TYPE_CHECKING:
    import sqlite_utils

    from .diff import DiffResult
    from .extract import Document
    from .targets import Target


TEXT_SUFFIX = ".gz"
"""Extracted texts are stored gzip-compressed under their `text_path` plus this suffix."""


def _atomic_write(path: Path, data: bytes) -> None:
    """A content-addressed file: written once (files.write_atomic), kept if already there."""
    if not path.exists():
        write_atomic(path, data)


_FETCH_COLUMNS = (
    "target_id", "started_at", "finished_at", "duration_ms", "requested_url", "final_url", "status", "content_type",
    "etag", "last_modified", "engine", "browser_version", "attempts", "outcome", "error_kind", "error_message",
    "raw_sha256", "text_sha256", "version_id", "extract_key",
)
_INSERT_FETCH = f"insert into fetches ({', '.join(_FETCH_COLUMNS)}) values ({', '.join('?' * len(_FETCH_COLUMNS))})"


# An unchanged check's commit (a fetch row, the target's last-checked time) is not fsynced:
# in WAL mode, with synchronous NORMAL for that one commit, a kill -9 loses nothing (the WAL
# is in the OS's cache), and a power cut may lose the last few such rows, as a batch of them
# would. Every other commit (a version, a change and its alerts, a state change) stays FULL,
# and its fsync of the WAL makes the quiet commits before it durable too; one expected to be
# unchanged that was not (another process stored a version meanwhile) fsyncs the WAL itself
# before returning. Most checks are unchanged, and an fsync each was a good part of their time.
_QUIET = "PRAGMA synchronous = NORMAL"


class Store:
    """The database and the snapshot directory, opened together."""

    def __init__(self, db_path: str | Path, snapshots_dir: str | Path):
        import sqlite_utils

        self.db_path = Path(db_path)
        self.snapshots_dir = Path(snapshots_dir)
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.db_path), timeout=30, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.db_path}: cannot open the database ({exc})") from None
        self.db: sqlite_utils.Database = sqlite_utils.Database(conn)
        self._wal = False  # WAL mode: unchanged checks commit quietly (see _QUIET)
        # target id -> [(state, consecutive failures)] as the last live fetch row left them,
        # in the commit_check transaction that wrote it (read by _update_state)
        self._status: dict[str, list[tuple[Any, Any]]] = {}
        try:
            self.db.execute("PRAGMA busy_timeout = 30000")
            self.db.enable_wal()
            self._wal = self.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._ensure_schema()
            if self.get_meta("text_storage") != "gzip":
                self._compress_texts()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.db_path}: not a usable monitor database ({exc})") from None

    @classmethod
    def open(cls, config: Any) -> Store:
        return cls(config.db_path, config.snapshots_dir)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ schema

    def _ensure_schema(self) -> None:
        db = self.db
        existing = self.get_meta("schema_version") if "meta" in db.table_names() else None
        if existing == str(SCHEMA_VERSION):
            return
        if existing == "1":
            with self.write():
                chain.migrate_from_1(self)
                schema.create_evaluations(db)
                db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
            return
        if existing is not None:
            raise StoreError(f"{self.db_path}: schema version {existing} is newer than this monitor knows ({SCHEMA_VERSION}); upgrade the monitor")
        with self.write():
            schema.create(self)

    def _compress_texts(self) -> None:
        """Migrate texts stored plain (before they were compressed) to `.md.gz`, once. Each
        compressed file is whole on disk before its plain copy goes, so a kill at any moment
        leaves every text readable; an interrupted run is finished at the next open."""
        with self.write():
            if self.get_meta("text_storage") == "gzip":  # another process did it meanwhile
                return
            for (rel,) in self.db.execute("select distinct text_path from versions"):
                plain = self.snapshots_dir / rel
                if plain.exists():
                    _atomic_write(self.snapshots_dir / (rel + TEXT_SUFFIX), gzip.compress(plain.read_bytes(), compresslevel=6, mtime=0))
                    plain.unlink()
            self.db["meta"].upsert({"key": "text_storage", "value": "gzip"}, pk="key")

    def text_file(self, rel: str) -> tuple[Path, bool]:
        """The file holding a version's text (its `text_path`) and whether it is compressed:
        `<text_path>.gz`, or the plain file of a store whose migration was interrupted."""
        packed = self.snapshots_dir / (rel + TEXT_SUFFIX)
        if packed.exists() or not (self.snapshots_dir / rel).exists():
            return packed, True
        return self.snapshots_dir / rel, False

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """One write transaction, taken up front (BEGIN IMMEDIATE) so that a read-then-write
        decision (is this text new?) cannot race another process writing the same target."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def _one(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        """One row as a dict, straight from the connection: sqlite-utils wraps every query
        in a savepoint, and the per-check path is a handful of these."""
        cursor = self.db.conn.execute(sql, params)
        row = cursor.fetchone()
        return dict(zip([c[0] for c in cursor.description], row)) if row is not None else None

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        rows = list(self.db.query("select value from meta where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.write():
            self.db["meta"].upsert({"key": key, "value": value}, pk="key")

    # ------------------------------------------------------------------ targets

    def sync_targets(self, targets: Sequence[Target]) -> None:
        """Make sure every configured target has a row (settings may have changed)."""
        now = utcnow()
        with self.write():
            cursor = self.db.conn.execute("select * from targets")  # one read for all of them
            names = [c[0] for c in cursor.description]
            rows = {row["id"]: row for row in (dict(zip(names, r)) for r in cursor)}
            for t in targets:
                existing = rows.get(t.id)
                row = {
                    "id": t.id, "service": t.service, "document": t.document, "url": t.url,
                    "urls": json.dumps(list(t.urls)), "updated_at": now,
                }
                if existing is None:
                    row["created_at"] = now
                    self.db["targets"].insert(row, pk="id")
                elif any(existing.get(k) != v for k, v in row.items() if k != "updated_at"):
                    if json.loads(existing.get("urls") or "[]") != list(t.urls):
                        row["engine_choice"] = None  # a new address may need another engine
                    self.db["targets"].update(t.id, row)

    def target_row(self, target_id: str) -> dict[str, Any] | None:
        return self._one("select * from targets where id = ?", [target_id])

    def update_target(self, target_id: str, **values: Any) -> None:
        with self.write():
            self.db["targets"].update(target_id, values)

    # ------------------------------------------------------------------ fetches

    def record_fetch(self, fetch: FetchRecord, outcome: str, version_id: int | None = None, *, live: bool = True) -> int:
        """Store one attempt (success or failure). A live attempt also keeps the target's
        status current (last fetch, failures); an archive fetch (an import) does not, or the
        scheduler would think the page had just been checked."""
        with self.write():
            return self._record_fetch(fetch, outcome, version_id, live=live)

    def _record_fetch(self, fetch: FetchRecord, outcome: str, version_id: int | None = None, *, live: bool = True) -> int:
        row = {
            "target_id": fetch.target_id, "started_at": fetch.started_at, "finished_at": fetch.finished_at,
            "duration_ms": fetch.duration_ms, "requested_url": fetch.requested_url,
            "final_url": fetch.final_url if fetch.final_url != fetch.requested_url else None,
            "status": fetch.status, "content_type": fetch.content_type, "etag": fetch.etag,
            "last_modified": fetch.last_modified, "engine": fetch.engine, "browser_version": fetch.browser_version,
            "attempts": fetch.attempts, "outcome": outcome, "error_kind": fetch.error_kind,
            "error_message": (fetch.error_message or None) and fetch.error_message[:300],
            "raw_sha256": fetch.raw_sha256, "text_sha256": fetch.text_sha256, "version_id": version_id,
            "extract_key": fetch.extract_key,
        }
        conn = self.db.conn
        fetch_id = conn.execute(_INSERT_FETCH, [row[c] for c in _FETCH_COLUMNS]).lastrowid
        if not live:
            return int(fetch_id)
        # one statement, the failure count kept by SQLite (no read of the row first); what it
        # returns is the status _update_state decides on, so that needs no read either
        if outcome == "failed":
            cursor = conn.execute(
                "update targets set last_fetch_at = ?, consecutive_failures = coalesce(consecutive_failures, 0) + 1, "
                "last_error_kind = ? where id = ? returning state, consecutive_failures",
                [fetch.finished_at, fetch.error_kind, fetch.target_id],
            )
        else:
            cursor = conn.execute(
                "update targets set last_fetch_at = ?, consecutive_failures = 0, last_success_at = ?, last_error_kind = null, "
                "last_change_at = case when ? then ? else last_change_at end where id = ? returning state, consecutive_failures",
                [fetch.finished_at, fetch.finished_at, outcome == "new-version", fetch.finished_at, fetch.target_id],
            )
        self._status[fetch.target_id] = cursor.fetchall()
        return int(fetch_id)

    def known_extraction(self, target_id: str, latest: Version | None) -> tuple[str, str] | None:
        """(extract_key, text sha256) of the last successful live fetch, if its text is still
        the latest version's (`latest`, as the caller read it): a fetch with the same key can
        skip extraction."""
        row = self.last_good_fetch(target_id, latest)
        return (row["extract_key"], row["text_sha256"]) if row else None

    def last_good_fetch(self, target_id: str, latest: Version | None) -> dict[str, Any] | None:
        """The last successful live fetch (extract_key, text_sha256, raw_sha256, engine, etag,
        last_modified, final_url, content_type), if its text is still `latest`'s: what the
        next check may skip extraction, or ask conditionally, by."""
        if latest is None:
            return None
        row = self.db.conn.execute(
            "select extract_key, text_sha256, raw_sha256, engine, etag, last_modified, coalesce(final_url, requested_url), "
            "content_type from fetches where target_id = ? and outcome in ('new-version', 'unchanged') "
            "and extract_key is not null order by started_at desc, id desc limit 1",
            [target_id],
        ).fetchone()
        if row is None or row[1] != latest.text_sha256:
            return None
        keys = ("extract_key", "text_sha256", "raw_sha256", "engine", "etag", "last_modified", "final_url", "content_type")
        return dict(zip(keys, row))

    def last_fetch(self, target_id: str) -> dict[str, Any] | None:
        """The latest live fetch (archive fetches made by imports are not checks of the page)."""
        rows = list(self.db.query(
            "select * from fetches where target_id = ? and coalesce(engine, '') not in ('wayback', 'ota') "
            "order by started_at desc, id desc limit 1",
            [target_id],
        ))
        return rows[0] if rows else None

    # ------------------------------------------------------------------ versions

    def _path(self, target_id: str, name: str) -> Path:
        return self.snapshots_dir / target_id / name

    def _write_gz(self, target_id: str, data: bytes, ext: str) -> tuple[str, str]:
        """A content-addressed compressed file: (sha256 of the data, path under snapshots/)."""
        sha = sha256_bytes(data)
        name = f"{sha}.{ext}.gz"
        path = self._path(target_id, name)
        if not path.exists():
            _atomic_write(path, gzip.compress(data, compresslevel=6, mtime=0))
        return sha, f"{target_id}/{name}"

    def _write_plain(self, target_id: str, data: bytes, ext: str) -> tuple[str, str]:
        """A content-addressed file kept as it is (screenshots are compressed already)."""
        sha = sha256_bytes(data)
        name = f"{sha}.{ext}"
        _atomic_write(self._path(target_id, name), data)
        return sha, f"{target_id}/{name}"

    def _write_raws(self, target_id: str, raws: Sequence[RawPart]) -> list[dict[str, Any]]:
        """Each raw part's files, and its entry of the version's `raws` (which the hash chain
        covers whole): the capture, the network exchange (headers file and body), the
        screenshot tiles, each named by its sha256."""
        out = []
        for part in raws:
            sha, rel = self._write_gz(target_id, part.data, part.ext)
            entry: dict[str, Any] = {"url": part.url, "sha256": sha, "path": rel, "content_type": part.content_type, "bytes": len(part.data)}
            if part.exchange is not None:
                body_sha, body_rel = self._write_gz(target_id, part.exchange.body, part.ext)
                head_sha, head_rel = self._write_plain(target_id, part.exchange.head_json(), "http.json")
                entry["response"] = {
                    "path": head_rel, "sha256": head_sha, "status": part.exchange.status,
                    "body_path": body_rel, "body_sha256": body_sha, "body_bytes": len(part.exchange.body),
                }
            if part.shots:
                entry["screenshots"] = []
                for shot in part.shots:
                    shot_sha, shot_rel = self._write_plain(target_id, shot.data, shot.fmt)
                    entry["screenshots"].append({
                        "path": shot_rel, "sha256": shot_sha, "format": shot.fmt, "width": shot.width,
                        "height": shot.height, "top": shot.top, "bytes": len(shot.data),
                    })
            out.append(entry)
        return out

    def latest_version(self, target_id: str) -> Version | None:
        row = self._one("select * from versions where target_id = ? order by observed_at desc, seq desc limit 1", [target_id])
        return Version.from_row(row) if row else None

    def versions(self, target_id: str) -> list[Version]:
        """All versions of a target in time order (imports interleave by observed time)."""
        rows = self.db.query("select * from versions where target_id = ? order by observed_at, seq", [target_id])
        return [Version.from_row(r) for r in rows]

    def version(self, target_id: str, seq: int) -> Version:
        rows = list(self.db.query("select * from versions where target_id = ? and seq = ?", [target_id, seq]))
        if not rows:
            count = self.db.execute("select count(*) from versions where target_id = ?", [target_id]).fetchone()[0]
            if not count:
                raise InputError(f"{target_id}@{seq}: no versions stored for {target_id!r}; run `monitor check {target_id}` first")
            raise InputError(f"{target_id}@{seq}: no such version; {target_id} has versions 1 to {count}")
        return Version.from_row(rows[0])

    def resolve(self, ref: str) -> Version:
        """'ID@N', 'ID@latest' or 'ID@latest~K' (K versions before the latest, in time order)."""
        target_id, _, which = ref.partition("@")
        if not target_id or not which:
            raise InputError(f"{ref}: expected TARGET_ID@N, TARGET_ID@latest or TARGET_ID@latest~K")
        if which.isdigit():
            return self.version(target_id, int(which))
        if which == "latest" or which.startswith("latest~"):
            back_text = which[len("latest~"):] if "~" in which else "0"
            if not back_text.isdigit():
                raise InputError(f"{ref}: after latest~ give a number, e.g. {target_id}@latest~1")
            history = self.versions(target_id)
            back = int(back_text)
            if not history:
                raise InputError(f"{ref}: no versions stored for {target_id!r}; check the id with `monitor status`")
            if back >= len(history):
                raise InputError(f"{ref}: {target_id} has only {len(history)} version(s)")
            return history[-1 - back]
        raise InputError(f"{ref}: expected TARGET_ID@N, TARGET_ID@latest or TARGET_ID@latest~K")

    def read_text(self, version: Version) -> str:
        for attempt in (1, 2):  # a second look: another process may have just compressed it
            path, compressed = self.text_file(version.text_path)
            try:
                data = path.read_bytes()
                return (gzip.decompress(data) if compressed else data).decode("utf-8")
            except FileNotFoundError as exc:
                if attempt == 2:
                    raise StoreError(f"{version.ref}: text file {path} is missing ({exc.strerror}); run `monitor verify`") from None
            except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
                raise StoreError(f"{version.ref}: text file {path} cannot be read ({getattr(exc, 'strerror', None) or exc}); run `monitor verify`") from None
        raise AssertionError("unreachable")

    def read_raw(self, raw: dict[str, Any]) -> bytes:
        return gzip.decompress((self.snapshots_dir / raw["path"]).read_bytes())

    def read_file(self, rel: str) -> bytes:
        """A stored file's content by its path under snapshots/ (.gz files decompressed); a
        version's `text_path` names its text, stored compressed as that name plus .gz."""
        path, compressed = (self.snapshots_dir / rel, True) if rel.endswith(".gz") else self.text_file(rel)
        data = path.read_bytes()
        return gzip.decompress(data) if compressed else data

    def document(self, version: Version) -> Document:
        from .extract import parse_stored

        doc = parse_stored(self.read_text(version), source=version.ref)
        doc.effective_date = version.effective_date
        return doc

    def find_text(self, target_id: str, text_sha: str, *, before: str | None = None) -> Version | None:
        """The most recent version of this target with exactly this text (observed before
        `before`, when given), if any."""
        rows = list(self.db.query(
            "select * from versions where target_id = ? and text_sha256 = ? and observed_at < coalesce(?, '9999') "
            "order by observed_at desc, seq desc limit 1",
            [target_id, text_sha, before],
        ))
        return Version.from_row(rows[0]) if rows else None

    def add_version(
        self,
        target_id: str,
        raws: Sequence[RawPart],
        document: Document,
        *,
        observed_at: str,
        fetch: FetchRecord | None = None,
        provenance: str = "live",
        provenance_ref: str | None = None,
    ) -> Version | None:
        """Record a new version (files first, then one transaction).

        Returns None, and stores no version, when the text equals the version that precedes
        it in time: nothing is ever stored twice. The comparison happens inside the write
        transaction, so two processes capturing the same target cannot both record it. The
        fetch, if given, is recorded in the same transaction. Only live captures update the
        target's status (last fetch, last change); imported ones are history, not checks.
        """
        live = provenance == "live"
        text = document.to_markdown()
        text_bytes = text.encode("utf-8")
        text_sha = sha256_bytes(text_bytes)
        before = self.version_before(target_id, observed_at)
        if before is not None and before.text_sha256 == text_sha:
            if fetch:
                self.record_fetch(fetch, "unchanged", live=live)
            return None  # unchanged: one fetch row, no file
        raw_meta = self._write_files(target_id, raws, text_bytes, text_sha)
        with self.write():
            before = self.version_before(target_id, observed_at)  # again: another process may have written
            if before is not None and before.text_sha256 == text_sha:
                if fetch:
                    self._record_fetch(fetch, "unchanged", live=live)
                return None
            return self._insert_version(
                target_id, raw_meta, document, text_bytes, text_sha, observed_at=observed_at, before=before,
                fetch=fetch, provenance=provenance, provenance_ref=provenance_ref,
            )

    def _write_files(self, target_id: str, raws: Sequence[RawPart], text_bytes: bytes, text_sha: str) -> list[dict[str, Any]]:
        """Raw and text files, each whole on disk before any row refers to it."""
        raw_meta = self._write_raws(target_id, raws)
        _atomic_write(self._path(target_id, f"{text_sha}.md{TEXT_SUFFIX}"), gzip.compress(text_bytes, compresslevel=6, mtime=0))
        return raw_meta

    def _insert_version(
        self,
        target_id: str,
        raw_meta: list[dict[str, Any]],
        document: Document,
        text_bytes: bytes,
        text_sha: str,
        *,
        observed_at: str,
        before: Version | None,
        fetch: FetchRecord | None,
        provenance: str,
        provenance_ref: str | None,
    ) -> Version:
        """The version row (and its fetch row), inside the caller's write transaction."""
        seq = self.db.execute("select coalesce(max(seq), 0) from versions where target_id = ?", [target_id]).fetchone()[0] + 1
        earlier = self.find_text(target_id, text_sha, before=observed_at)
        reverted_to = earlier.seq if earlier is not None and (before is None or earlier.id != before.id) else None
        row = {
            "target_id": target_id, "seq": seq, "observed_at": observed_at, "recorded_at": utcnow(),
            "fetch_id": None, "raws": json.dumps(raw_meta), "text_sha256": text_sha,
            "text_path": f"{target_id}/{text_sha}.md", "text_bytes": len(text_bytes),
            "clause_count": len(document.clauses), "effective_date": document.effective_date,
            "title": document.title, "prev_chain": GENESIS, "chain_hash": GENESIS,  # set below, from the chain entry
            "provenance": provenance, "provenance_ref": provenance_ref, "reverted_to": reverted_to,
        }
        version_id = int(self.db["versions"].insert(row).last_pk)
        if fetch:
            fetch_id = self._record_fetch(fetch, "new-version", version_id, live=provenance == "live")
            self.db["versions"].update(version_id, {"fetch_id": fetch_id})
        prev, digest = chain.append(self, "version", version_id)
        self.db["versions"].update(version_id, {"prev_chain": prev, "chain_hash": digest})
        row.update(id=version_id, prev_chain=prev, chain_hash=digest)
        return Version.from_row(row)

    # ------------------------------------------------------------------ one check, one transaction

    def commit_check(self, outcome: CheckOutcome) -> Committed:
        """Store everything one live check produced in one transaction.

        The predecessor is decided here, under the write lock: if another process stored a
        version since the check read the latest one, the capture is compared with that one
        instead (its text equal: an unchanged fetch; observed before it: a stale fetch, since
        the page has been seen later). An identical text is never a new version."""
        cand = outcome.candidate
        raw_meta: list[dict[str, Any]] | None = None
        text_bytes = b""
        if cand is not None and cand.document is not None:
            text_bytes = cand.document.to_markdown().encode("utf-8")
            latest = self.latest_version(outcome.target_id)
            if latest is None or latest.text_sha256 != cand.fetch.text_sha256:
                raw_meta = self._write_files(outcome.target_id, cand.raws, text_bytes, sha256_bytes(text_bytes))
        conn = self.db.conn
        # an unchanged fetch (same bytes, or the same text) is expected to commit quietly
        quiet = self._wal and not conn.in_transaction and cand is not None and not outcome.failed and not outcome.fetches and not outcome.engine_choice and (
            cand.document is None or raw_meta is None)
        if quiet:
            conn.execute(_QUIET)  # only outside a transaction
        self._status.pop(outcome.target_id, None)
        try:
            with self.write():
                if outcome.engine_choice:
                    conn.execute("update targets set engine_choice = ? where id = ?", [outcome.engine_choice, outcome.target_id])
                for record, kind in outcome.fetches:
                    self._record_fetch(record, kind)
                committed = Committed("failed" if outcome.failed else "unconfirmed")
                if cand is not None:
                    committed = self._commit_candidate(outcome.target_id, cand, raw_meta, text_bytes)
                outage_rows = outcome.watch() if outcome.watch is not None else []
                if outage_rows:
                    self._insert_alerts(outage_rows)
                committed.state_change = self._update_state(outcome)
        finally:
            if quiet:
                conn.execute("PRAGMA synchronous = FULL")
        if quiet and (committed.outcome != "unchanged" or outage_rows or committed.state_change):
            self._sync_wal()  # it was not quiet after all: durable now, as a FULL commit would be
        return committed

    def _sync_wal(self) -> None:
        """fsync the WAL, which is what a commit with synchronous FULL does."""
        fd = os.open(f"{self.db_path}-wal", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _commit_candidate(self, target_id: str, cand: Candidate, raw_meta: list[dict[str, Any]] | None, text_bytes: bytes) -> Committed:
        fetch = cand.fetch
        text_sha = fetch.text_sha256
        assert text_sha is not None
        latest = self.latest_version(target_id)
        if latest is not None and latest.text_sha256 == text_sha:
            self._record_fetch(fetch, "unchanged")
            return Committed("unchanged")
        if latest is not None and latest.observed_at > fetch.finished_at:
            self._record_fetch(fetch, "stale")  # another check saw the page later and stored it
            return Committed("unchanged")
        document = cand.document
        known = None
        if document is None:  # same bytes as the last fetch, whose text is no longer the latest
            known = self.find_text(target_id, text_sha)
            if known is None:
                raise StoreError(f"{target_id}: text {text_sha[:12]} of an unchanged fetch is not stored; run `monitor verify`")
            document = self.document(known)
            text_bytes = self.read_text(known).encode("utf-8")
        if raw_meta is None and not cand.raws and known is not None:  # a 304: the raw files are the known version's
            raw_meta = list(known.raws)
        if raw_meta is None:  # the latest moved after the files were skipped
            raw_meta = self._write_files(target_id, cand.raws, text_bytes, text_sha)
        version = self._insert_version(
            target_id, raw_meta, document, text_bytes, text_sha, observed_at=fetch.finished_at, before=latest,
            fetch=fetch, provenance="live", provenance_ref=None,
        )
        if latest is None:
            return Committed("first-version", version=version)
        plan = cand.plan(latest, document, version.reverted_to)
        change_id = self.add_change(
            latest, version, plan.result, alert_rows=plan.alert_rows, html=plan.html, html_version=plan.html_version,
        )
        return Committed("new-version", version=version, change_id=change_id, result=plan.result)

    def _update_state(self, outcome: CheckOutcome) -> str | None:
        """Move a target into `failing` after N consecutive failures, and out of it on success,
        queueing the state alert with it. Returns 'failing' or 'recovered' when it changed."""
        status = self._status.pop(outcome.target_id, None)
        if status is None:  # no live fetch recorded in this transaction (none is: read it)
            status = self.db.conn.execute("select state, consecutive_failures from targets where id = ?", [outcome.target_id]).fetchall()
        state, failures = status[0] if status else (None, None)
        state = state or "new"
        failures = failures or 0
        if outcome.failed and state != "failing" and failures >= outcome.failure_threshold:
            change, detail = "failing", f"{failures} consecutive failures; last: {outcome.error}"
        elif not outcome.failed and state == "failing":
            change, detail = "recovered", "checks succeed again"
        else:
            if not outcome.failed and state != "ok":
                self.db.conn.execute("update targets set state = 'ok' where id = ?", [outcome.target_id])
            return None
        self.db.conn.execute(
            "update targets set state = ?, failing_since = ? where id = ?",
            ["failing" if change == "failing" else "ok", utcnow() if change == "failing" else None, outcome.target_id],
        )
        self._insert_alerts(outcome.state_alerts(change, detail) if outcome.state_alerts else [])
        return change

    def version_before(self, target_id: str, observed_at: str) -> Version | None:
        """The version observed last at or before this time (the one a new capture follows)."""
        rows = list(self.db.query(
            "select * from versions where target_id = ? and observed_at <= ? order by observed_at desc, seq desc limit 1",
            [target_id, observed_at],
        ))
        return Version.from_row(rows[0]) if rows else None

    def add_change(
        self,
        old: Version,
        new: Version,
        result: DiffResult,
        *,
        alert_rows: Sequence[dict[str, Any]] = (),
        detected_at: str | None = None,
        html: str | None = None,
        html_version: int | None = None,
    ) -> int:
        """Store a change record (the diff JSON, summary columns for fast reports, and its
        rendered clause HTML if given) and its alerts in one transaction: an alert is never
        lost, and never without its change."""
        from .diff import summary_line
        from .severity import most_severe

        flags = result.flags
        severities = [f.severity for f in flags]
        max_severity = most_severe(severities)
        row = {
            "target_id": new.target_id, "old_version_id": old.id, "new_version_id": new.id,
            "old_seq": old.seq, "new_seq": new.seq, "detected_at": detected_at or utcnow(),
            "observed_at": new.observed_at, "substantive": int(result.substantive),
            "n_changes": sum(1 for c in result.changes if not c.cosmetic), "n_flags": len(flags),
            "categories": ",".join(sorted({f.category for f in flags})) or None,
            "max_severity": max_severity, "signals": json.dumps([s.to_dict() for s in result.signals]),
            "summary": summary_line(result), "diff": json.dumps(result.to_dict(), ensure_ascii=False),
            "alerted": int(bool(alert_rows)), "html": html, "html_version": html_version,
        }
        with self.write():
            existing = list(self.db.query(
                "select id from changes where old_version_id = ? and new_version_id = ? and superseded_by is null", [old.id, new.id]
            ))
            if existing:
                return int(existing[0]["id"])
            change_id = int(self.db["changes"].insert(row).last_pk)
            chain.append(self, "change", change_id)
            self._insert_alerts([{**alert, "change_id": change_id} for alert in alert_rows])
        return change_id

    def supersede_change(self, old: Version, new: Version, by_change_id: int | None) -> None:
        """Mark the change old -> new as replaced (an imported version now sits between them).
        The row stays, for the audit trail; reports and history skip superseded changes, and
        its alerts not yet sent are dropped."""
        with self.write():
            for row in list(self.db.query(  # read first: the loop writes to the same tables
                "select id from changes where old_version_id = ? and new_version_id = ? and superseded_by is null", [old.id, new.id]
            )):
                self.db.execute("update changes set superseded_by = ? where id = ?", [by_change_id or -1, row["id"]])
                chain.append(self, "supersede", row["id"])
                self.db.execute("delete from alerts where change_id = ? and state = 'pending'", [row["id"]])

    def change(self, change_id: int) -> dict[str, Any]:
        rows = list(self.db.query("select * from changes where id = ?", [change_id]))
        if not rows:
            raise InputError(f"no change with id {change_id}; list them with `monitor report` or `monitor history TARGET`")
        return rows[0]

    # ------------------------------------------------------------------ re-evaluations

    def latest_evaluation(self, change_id: int) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from evaluations where change_id = ? order by id desc limit 1", [change_id]))
        return rows[0] if rows else None

    def add_evaluation(self, change_id: int, result: DiffResult, *, rules: str, evaluated_at: str | None = None) -> int:
        """Record a new evaluation of a stored change (nothing of the change is overwritten)."""
        from .diff import summary_line
        from .severity import most_severe

        flags = result.flags
        severities = [f.severity for f in flags]
        row = {
            "change_id": change_id, "evaluated_at": evaluated_at or utcnow(), "rules": rules,
            "substantive": int(result.substantive), "n_changes": sum(1 for c in result.changes if not c.cosmetic),
            "n_flags": len(flags), "categories": ",".join(sorted({f.category for f in flags})) or None,
            "max_severity": most_severe(severities),
            "summary": summary_line(result), "diff": json.dumps(result.to_dict(), ensure_ascii=False),
        }
        with self.write():
            evaluation_id = int(self.db["evaluations"].insert(row).last_pk)
            chain.append(self, "evaluation", evaluation_id)  # a report reads it: the chain covers it
        return evaluation_id

    def version_by_id(self, version_id: int) -> Version:
        rows = list(self.db.query("select * from versions where id = ?", [version_id]))
        if not rows:
            raise InputError(f"no version with id {version_id}")
        return Version.from_row(rows[0])

    def add_alerts(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.write():
            self._insert_alerts(rows)

    def _insert_alerts(self, rows: Sequence[dict[str, Any]]) -> None:
        """Outbox rows, each carrying the chain head at the time (a copy verify compares)."""
        now, head = utcnow(), chain.head(self)
        for alert in rows:
            self.db["alerts"].insert({"created_at": now, "state": "pending", "attempts": 0, "next_attempt_at": now, **alert, "chain_head": head})

    # ------------------------------------------------------------------ verify

    def verify(self, *, heads: Sequence[tuple[str, str]] = ()) -> list[VerifyProblem]:
        """Every file against its digest, every chain entry against the rows it covers, every
        copy of the chain head (plus `heads`, e.g. from an email) against the chain."""
        return chain.verify(self, heads=list(heads))

    def chain_head(self) -> str:
        return chain.head(self)

    # ------------------------------------------------------------------ stats

    def counts(self) -> dict[str, int]:
        return {
            table: self.db.execute(f"select count(*) from {table}").fetchone()[0]  # noqa: S608 - fixed names
            for table in ("targets", "fetches", "versions", "changes", "alerts")
        }
