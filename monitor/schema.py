"""The database's tables and indexes, created in one transaction on a new database."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from . import chain

if TYPE_CHECKING:
    from .store import Store

SCHEMA_VERSION = 2  # 2: hash chain record format 2 (monitor/chain.py); 1 is migrated on open


def create(store: Store) -> None:
    """Every table, inside the caller's write transaction (idempotent)."""
    db = store.db
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["targets"].create(
        {
            "id": str, "service": str, "document": str, "url": str, "urls": str,
            "engine_choice": str, "engine_checks": int, "state": str, "consecutive_failures": int,
            "failing_since": str, "last_fetch_at": str, "last_success_at": str, "last_change_at": str,
            "last_error_kind": str, "next_due_at": str, "created_at": str, "updated_at": str,
        },
        pk="id",
        defaults={"state": "new", "consecutive_failures": 0, "engine_checks": 0},
        if_not_exists=True,
    )
    db["fetches"].create(
        {
            "id": int, "target_id": str, "started_at": str, "finished_at": str, "duration_ms": int,
            "requested_url": str, "final_url": str, "status": int, "content_type": str, "etag": str,
            "last_modified": str, "engine": str, "browser_version": str, "attempts": int,
            "outcome": str, "error_kind": str, "error_message": str, "raw_sha256": str,
            "text_sha256": str, "version_id": int, "extract_key": str,
        },
        pk="id",
        foreign_keys=[("target_id", "targets", "id")],
        if_not_exists=True,
    )
    db["versions"].create(
        {
            "id": int, "target_id": str, "seq": int, "observed_at": str, "recorded_at": str,
            "fetch_id": int, "raws": str, "text_sha256": str, "text_path": str, "text_bytes": int,
            "clause_count": int, "effective_date": str, "title": str, "prev_chain": str,
            "chain_hash": str, "provenance": str, "provenance_ref": str, "reverted_to": int,
        },
        pk="id",
        foreign_keys=[("target_id", "targets", "id")],
        if_not_exists=True,
    )
    db["changes"].create(
        {
            "id": int, "target_id": str, "old_version_id": int, "new_version_id": int,
            "old_seq": int, "new_seq": int, "detected_at": str, "observed_at": str,
            "substantive": int, "n_changes": int, "n_flags": int, "categories": str,
            "max_severity": str, "signals": str, "summary": str, "diff": str, "reviewed_at": str,
            "alerted": int, "superseded_by": int, "html": str, "html_version": int,
        },
        pk="id",
        foreign_keys=[("target_id", "targets", "id")],
        if_not_exists=True,
    )
    db["alerts"].create(
        {
            "id": int, "kind": str, "channel": str, "target_id": str, "change_id": int,
            "recipients": str, "created_at": str, "state": str, "attempts": int,
            "next_attempt_at": str, "last_error": str, "sent_at": str, "message_id": str,
            "payload": str, "chain_head": str,
        },
        pk="id",
        defaults={"state": "pending", "attempts": 0},
        if_not_exists=True,
    )
    for table, columns, unique in (
        ("fetches", ["target_id", "started_at"], False),
        ("versions", ["target_id", "seq"], True),
        ("versions", ["target_id", "observed_at"], False),
        ("versions", ["target_id", "text_sha256"], False),
        ("changes", ["detected_at"], False),
        ("changes", ["target_id", "detected_at"], False),
        ("changes", ["observed_at"], False),
        ("changes", ["new_version_id"], False),
        ("alerts", ["state", "next_attempt_at"], False),
    ):
        db[table].create_index(columns, unique=unique, if_not_exists=True)
    create_evaluations(db)
    chain.create_table(store)
    db["meta"].upsert({"key": "schema_version", "value": str(SCHEMA_VERSION)}, pk="key")
    if store.get_meta("store_id") is None:
        db["meta"].upsert({"key": "store_id", "value": os.urandom(8).hex()}, pk="key")


def create_evaluations(db: Any) -> None:
    """Flags recomputed by newer rules (`monitor reflag`) are kept beside the change's own:
    what was detected and alerted stays as it was, and reports read the latest evaluation."""
    db["evaluations"].create(
        {
            "id": int, "change_id": int, "evaluated_at": str, "rules": str, "substantive": int,
            "n_changes": int, "n_flags": int, "categories": str, "max_severity": str, "summary": str,
            "diff": str,
        },
        pk="id",
        foreign_keys=[("change_id", "changes", "id")],
        if_not_exists=True,
    )
    db["evaluations"].create_index(["change_id"], if_not_exists=True)
