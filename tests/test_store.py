"""The store: nothing lost, nothing stored twice, tampering detected, crash-safe."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.extract import extract_html
from monitor.store import FetchRecord, RawPart, Store, utcnow

from .conftest import ROOT


def doc(*paragraphs: str):
    return extract_html("<h1>Policy</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs))


def add(store: Store, html: str, *, target: str = "t1", when: str | None = None):
    document = extract_html(html)
    now = when or utcnow()
    record = FetchRecord(target, now, now, "https://example.com/p", status=200, engine="http")
    return store.add_version(target, [RawPart("https://example.com/p", html.encode(), "html", "text/html")], document, observed_at=now, fetch=record)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "monitor.db", tmp_path / "snapshots")
    s.db["targets"].insert({"id": "t1", "service": "S", "document": "terms", "url": "https://example.com/p"})
    s.db["targets"].insert({"id": "t2", "service": "S", "document": "terms", "url": "https://example.com/q"})
    yield s
    s.close()


def test_versions_are_content_addressed_and_never_stored_twice(store: Store, tmp_path: Path) -> None:
    v1 = add(store, "<p>One.</p>")
    assert v1 is not None and v1.seq == 1
    assert add(store, "<p>One.</p>") is None  # same text: one more fetch row, no version
    # different raw HTML, same text: still no new version, and no new file
    assert add(store, "<div><p>One.</p></div><!-- build 2 -->") is None
    files = sorted(p.name for p in (tmp_path / "snapshots" / "t1").iterdir())
    assert len(files) == 2, files  # one raw .html.gz and one .md
    counts = store.counts()
    assert counts["versions"] == 1 and counts["fetches"] == 3
    outcomes = [r["outcome"] for r in store.db.query("select outcome from fetches order by id")]
    assert outcomes == ["new-version", "unchanged", "unchanged"]
    raw_path = tmp_path / "snapshots" / v1.raws[0]["path"]
    assert gzip.decompress(raw_path.read_bytes()) == b"<p>One.</p>" == store.read_raw(v1.raws[0])
    assert store.read_text(v1) == "One.\n"


def test_unchanged_fetch_adds_a_small_row_and_nothing_else(store: Store, tmp_path: Path) -> None:
    add(store, "<p>One.</p>")
    store.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before_files = sorted(p for p in (tmp_path / "snapshots").rglob("*"))
    rows_before = store.counts()
    for _ in range(20):
        add(store, "<p>One.</p>")
    assert sorted(p for p in (tmp_path / "snapshots").rglob("*")) == before_files
    after = store.counts()
    assert after["fetches"] == rows_before["fetches"] + 20 and after["versions"] == rows_before["versions"]


def test_refs_latest_and_back(store: Store) -> None:
    add(store, "<p>One.</p>")
    add(store, "<p>Two.</p>")
    add(store, "<p>Three.</p>")
    assert store.resolve("t1@latest").seq == 3
    assert store.resolve("t1@latest~2").seq == 1
    assert store.resolve("t1@2").seq == 2
    with pytest.raises(InputError, match="has versions 1 to 3"):
        store.resolve("t1@9")
    with pytest.raises(InputError, match="only 3 version"):
        store.resolve("t1@latest~3")
    with pytest.raises(InputError, match="no versions stored"):
        store.resolve("t2@latest")
    with pytest.raises(InputError, match="expected TARGET_ID@N"):
        store.resolve("t1")


def test_revert_is_a_new_version_pointing_at_the_earlier_one(store: Store) -> None:
    add(store, "<p>A.</p>")
    add(store, "<p>B.</p>")
    v3 = add(store, "<p>A.</p>")
    assert v3 is not None and v3.seq == 3 and v3.reverted_to == 1


def test_verify_passes_then_names_each_fault(store: Store, tmp_path: Path) -> None:
    add(store, "<p>One.</p>")
    v2 = add(store, "<p>Two.</p>")
    add(store, "<p>One.</p>", target="t2")
    assert [p for p in store.verify() if p.severity == "error"] == []
    # 1. a text file edited
    text_path = tmp_path / "snapshots" / v2.text_path
    text_path.write_text("Two, edited.\n")
    # 2. a row edited in the database (its chain hash no longer matches)
    store.db.execute("update versions set observed_at = '2000-01-01T00:00:00.000Z' where target_id = 't1' and seq = 1")
    store.db.conn.commit()
    # 3. a raw file deleted
    t2 = store.resolve("t2@1")
    (tmp_path / "snapshots" / t2.raws[0]["path"]).unlink()
    problems = [str(p) for p in store.verify() if p.severity == "error"]
    assert any("t1@2" in p and "does not match its recorded sha256" in p for p in problems), problems
    assert any("t1@1" in p and "chain hash does not match" in p for p in problems), problems
    assert any("t2@1" in p and "file missing" in p for p in problems), problems
    assert len(problems) == 3


def test_chain_links_versions_in_recorded_order(store: Store) -> None:
    v1 = add(store, "<p>One.</p>")
    v2 = add(store, "<p>Two.</p>")
    row = next(store.db.query("select prev_chain from versions where id = ?", [v2.id]))
    assert row["prev_chain"] == v1.chain_hash


WRITER = textwrap.dedent(
    """
    import sys
    from monitor.extract import extract_html
    from monitor.store import FetchRecord, RawPart, Store, utcnow
    store = Store(sys.argv[1], sys.argv[2])
    store.db["targets"].insert({"id": "t1", "service": "S", "document": "terms", "url": "u"}, ignore=True)
    i = 0
    while True:
        i += 1
        html = "<p>" + ("Version %d. " % i) * 2000 + "</p>"
        now = utcnow()
        store.add_version("t1", [RawPart("u", html.encode(), "html")], extract_html(html), observed_at=now,
                          fetch=FetchRecord("t1", now, now, "u"))
        print(i, flush=True)
    """
)


def test_kill_9_while_writing_leaves_a_verifiable_store(tmp_path: Path) -> None:
    db, snaps = tmp_path / "monitor.db", tmp_path / "snapshots"
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(snaps)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        assert proc.stdout is not None
        for _ in range(3 + round_):
            proc.stdout.readline()
        time.sleep(0.05 * round_)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Store(db, snaps) as store:
        errors = [p for p in store.verify() if p.severity == "error"]
        assert errors == []
        assert store.counts()["versions"] >= 9
        seqs = [r["seq"] for r in store.db.query("select seq from versions order by seq")]
        assert seqs == list(range(1, len(seqs) + 1))


def test_change_and_its_alerts_are_one_transaction(store: Store) -> None:
    from monitor.diff import compare

    v1 = add(store, "<p>We keep your data.</p>")
    v2 = add(store, "<p>We keep your data for ten years.</p>")
    result = compare(store.document(v1), store.document(v2), flag=False)
    change_id = store.add_change(v1, v2, result, alert_rows=[{"kind": "change", "channel": "email", "target_id": "t1", "recipients": json.dumps(["a@b.example"])}])
    row = store.change(change_id)
    assert row["substantive"] == 1 and row["old_seq"] == 1 and row["new_seq"] == 2
    assert json.loads(row["diff"])["changes"][0]["kind"] == "modified"
    alerts = list(store.db.query("select * from alerts"))
    assert len(alerts) == 1 and alerts[0]["change_id"] == change_id and alerts[0]["state"] == "pending"
    # recording the same change again returns the same id and queues nothing more
    assert store.add_change(v1, v2, result, alert_rows=[{"kind": "change", "channel": "email", "target_id": "t1"}]) == change_id
    assert store.counts()["alerts"] == 1


def commit(store: Store, html: str, *, when: str, base=None):
    """What a live check hands the store: one outcome, with a planner that diffs against
    whichever predecessor the store finds (and says which one it was asked for)."""
    from monitor.diff import compare
    from monitor.store import Candidate, ChangePlan, CheckOutcome

    document = extract_html(html)
    asked: list[int] = []

    def plan(old, new_doc, reverted_to):
        asked.append(old.seq)
        result = compare(store.document(old), new_doc, flag=False)
        rows = [{"kind": "change", "channel": "email", "target_id": "t1"}] if result.substantive else []
        return ChangePlan(result, rows)

    record = FetchRecord("t1", when, when, "https://example.com/p", status=200, engine="http",
                         text_sha256=__import__("hashlib").sha256(document.to_markdown().encode()).hexdigest())
    outcome = CheckOutcome("t1", candidate=Candidate(record, [RawPart("https://example.com/p", html.encode(), "html")], document, plan))
    return store.commit_check(outcome), asked


def test_a_capture_committed_after_a_later_one_with_the_same_text_is_not_a_version(tmp_path: Path, store: Store) -> None:
    """Issue 12 #9, the interleaving two concurrent checks produce: A fetches at t1, B at t2,
    B commits first. A must not become a second version of the same text."""
    commit(store, "<p>One.</p>", when="2026-01-01T00:00:00.000Z")
    other = Store(tmp_path / "monitor.db", tmp_path / "snapshots")  # a second process's connection
    try:
        b, _ = commit(other, "<p>Two.</p>", when="2026-01-01T00:00:02.000Z")
        a, _ = commit(store, "<p>Two.</p>", when="2026-01-01T00:00:01.000Z")
    finally:
        other.close()
    assert (b.outcome, a.outcome) == ("new-version", "unchanged")
    texts = [r["text_sha256"] for r in store.db.query("select text_sha256 from versions order by observed_at, seq")]
    assert len(texts) == 2 and texts[0] != texts[1]
    assert store.counts()["changes"] == 1 and store.counts()["alerts"] == 1
    outcomes = [r["outcome"] for r in store.db.query("select outcome from fetches order by id")]
    assert outcomes == ["new-version", "new-version", "unchanged"]


def test_a_moved_predecessor_is_diffed_inside_the_transaction(tmp_path: Path, store: Store) -> None:
    """A check read version 1; another process stored version 2 before it committed: its
    change starts at version 2, diffed again; a capture older than the latest is stale."""
    commit(store, "<p>One.</p>", when="2026-01-01T00:00:00.000Z")
    commit(store, "<p>Two.</p>", when="2026-01-01T00:00:02.000Z")
    late, asked = commit(store, "<p>Three.</p>", when="2026-01-01T00:00:03.000Z")
    assert late.outcome == "new-version" and asked == [2]
    change = store.change(late.change_id)
    assert (change["old_seq"], change["new_seq"]) == (2, 3)
    stale, asked = commit(store, "<p>Four.</p>", when="2026-01-01T00:00:01.000Z")
    assert stale.outcome == "unchanged" and asked == []
    assert [r["outcome"] for r in store.db.query("select outcome from fetches order by id desc limit 1")] == ["stale"]
    assert store.counts()["versions"] == 3


def test_a_failed_commit_stores_nothing_of_the_check(store: Store) -> None:
    """Version, change, alerts, fetch row and state are one transaction: a planner that
    raises (as a kill would stop it) leaves none of them."""
    from monitor.store import Candidate, CheckOutcome

    commit(store, "<p>One.</p>", when="2026-01-01T00:00:00.000Z")
    before = store.counts()

    def broken(old, new_doc, reverted_to):
        raise RuntimeError("killed")

    document = extract_html("<p>Two.</p>")
    record = FetchRecord("t1", "2026-01-01T00:00:01.000Z", "2026-01-01T00:00:01.000Z", "u", text_sha256="f" * 64)
    with pytest.raises(RuntimeError):
        store.commit_check(CheckOutcome("t1", candidate=Candidate(record, [RawPart("u", b"<p>Two.</p>", "html")], document, broken)))
    assert store.counts() == before
