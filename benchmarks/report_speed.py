"""Report benchmark: `monitor report` over 10,000 stored changes, as JSON and as HTML.

Builds a store with 10,000 changes whose diffs are real (computed from consecutive versions
of the policy corpus, most of them large rewrites: a pessimistic mix), stored as the monitor
stores them (diff JSON and pre-rendered clause HTML), then times the report as the command
runs it (query, render, write the file), in-process, best of 3. Budget: at most 2 s each for JSON and HTML. Also checks that the
report's query uses an index (EXPLAIN QUERY PLAN).

    python benchmarks/report_speed.py [--changes 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from common import Figure, best_of, corpus_markdown_files, print_table

NAME = "report"


def build_store(directory: Path, count: int):
    """A store with `count` changes over 20 targets, reusing real diff JSON."""
    from monitor.diff import compare
    from monitor.extract import extract_file
    from monitor.flags import load_rules
    from monitor.report import RENDER_VERSION, clauses_html
    from monitor.store import Store, to_timestamp
    from datetime import datetime, timedelta, timezone

    rules = load_rules()
    by_doc: dict[Path, list[Path]] = {}
    for path in corpus_markdown_files():
        by_doc.setdefault(path.parent, []).append(path)
    diffs = []
    for files in by_doc.values():
        files.sort()
        for old, new in zip(files, files[1:]):
            result = compare(extract_file(old), extract_file(new), rules=rules)
            if result.substantive:
                diffs.append((json.dumps(result.to_dict(), ensure_ascii=False), clauses_html(result.to_dict()), result))
    store = Store(directory / "monitor.db", directory / "snapshots")
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with store.write():
        for t in range(20):
            store.db["targets"].insert({"id": f"target-{t}", "service": f"Service {t}", "document": "privacy-policy", "url": f"https://example.com/{t}"})
        version_rows = []
        per_target = count // 20 + 1
        for t in range(20):
            for seq in range(1, per_target + 2):
                version_rows.append({
                    "target_id": f"target-{t}", "seq": seq, "observed_at": to_timestamp(start + timedelta(hours=seq * 6 + t)),
                    "raws": "[]", "text_sha256": f"{t}-{seq}", "text_path": "x", "text_bytes": 50000, "clause_count": 200,
                    "effective_date": None, "prev_chain": "", "chain_hash": "", "provenance": "live",
                })
        store.db["versions"].insert_all(version_rows, batch_size=1000)
        ids = {(r["target_id"], r["seq"]): r["id"] for r in store.db.query("select id, target_id, seq from versions")}
        rows = []
        for n in range(count):
            t, seq = n % 20, n // 20 + 1
            diff_json, html, result = diffs[rng.randrange(len(diffs))]
            flags = result.flags
            rows.append({
                "target_id": f"target-{t}", "old_version_id": ids[(f"target-{t}", seq)], "new_version_id": ids[(f"target-{t}", seq + 1)],
                "old_seq": seq, "new_seq": seq + 1, "detected_at": to_timestamp(start + timedelta(hours=seq * 6 + t, minutes=1)),
                "observed_at": to_timestamp(start + timedelta(hours=seq * 6 + t)), "substantive": 1,
                "n_changes": sum(1 for c in result.changes if not c.cosmetic), "n_flags": len(flags),
                "categories": ",".join(sorted({f.category for f in flags})) or None, "max_severity": None,
                "signals": "[]", "summary": "", "diff": diff_json, "html": html, "html_version": RENDER_VERSION,
            })
        store.db["changes"].insert_all(rows, batch_size=500)
    # Written here in one transaction; a real store grows check by check and SQLite folds its
    # write-ahead log into the database as it goes. Do that now, as it would have happened.
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def run(count: int = 10000) -> list[Figure]:
    from monitor.report import ReportQuery, query_changes, report_html, report_json

    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), count)
        size = Path(tmp, "monitor.db").stat().st_size

        out = Path(tmp) / "report.out"

        def as_json() -> None:  # what `monitor report --format json -o FILE` does
            rows = query_changes(store, ReportQuery(), diff=True)
            assert len(rows) == count
            with out.open("w", encoding="utf-8") as handle:
                handle.writelines(report_json(rows, since=None))

        def as_html() -> None:  # what `monitor report --format html -o FILE` does
            rows = query_changes(store, ReportQuery(), diff=False, html=True)
            with out.open("w", encoding="utf-8") as handle:
                handle.writelines(report_html(rows, store))

        def one_target_flagged() -> None:
            query_changes(store, ReportQuery(targets=("target-3",), flagged=True, since="2024-06-01T00:00:00.000Z"))

        json_s, html_s, filtered_s = best_of(3, as_json), best_of(3, as_html), best_of(3, one_target_flagged)
        plan = " ".join(str(row[-1]) for row in store.db.execute(
            "explain query plan select * from changes c where c.target_id = ? and c.detected_at >= ? order by c.detected_at desc", ["target-3", "2024-06-01"]
        ).fetchall())
        store.close()
    uses_index = "USING INDEX" in plan.upper()
    return [
        Figure(NAME, "changes stored", count, "changes"),
        Figure(NAME, "database size", size / 2**20, "MiB"),
        Figure.check(NAME, f"report --format json, {count} changes", json_s, "s", "<=", 2),
        Figure.check(NAME, f"report --format html, {count} changes", html_s, "s", "<=", 2),
        Figure(NAME, "report --target X --flagged --since D", filtered_s * 1000, "ms"),
        Figure(NAME, "target+date query uses an index", 1.0 if uses_index else 0.0, "yes=1", ">= 1", uses_index),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=10000)
    args = parser.parse_args()
    figures = run(args.changes)
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
