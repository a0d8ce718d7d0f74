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

from .conftest import ROOT, run_cli


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
    # 1. a text file edited (texts are stored compressed, beside their recorded name)
    text_file, compressed = store.text_file(v2.text_path)
    assert compressed and text_file == tmp_path / "snapshots" / (v2.text_path + ".gz")
    text_file.write_bytes(gzip.compress(b"Two, edited.\n"))
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


def test_texts_are_stored_compressed_and_plain_stores_migrate_on_open(store: Store, tmp_path: Path) -> None:
    body = "<p>" + "We collect the information you give us when you use the service. " * 200 + "</p>"
    v1 = add(store, body)
    v2 = add(store, "<p>Two.</p>")
    packed = tmp_path / "snapshots" / (v1.text_path + ".gz")
    assert packed.exists() and not (tmp_path / "snapshots" / v1.text_path).exists()
    text = store.read_text(v1)
    assert len(packed.read_bytes()) < len(text.encode()) / 10  # a repetitive page compresses well
    # A store written before texts were compressed: plain `.md` files, no marker.
    for version in (v1, v2):
        path, _ = store.text_file(version.text_path)
        (tmp_path / "snapshots" / version.text_path).write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    store.db.execute("delete from meta where key = 'text_storage'")
    store.db.conn.commit()
    head = store.chain_head()
    assert store.read_text(v2).startswith("Two.")  # readable before the migration too
    store.close()
    reopened = Store(tmp_path / "monitor.db", tmp_path / "snapshots")
    try:
        assert reopened.get_meta("text_storage") == "gzip"
        assert sorted(p.name for p in (tmp_path / "snapshots" / "t1").glob("*.md*")) == sorted(
            [Path(v1.text_path).name + ".gz", Path(v2.text_path).name + ".gz"]
        )
        assert reopened.read_text(v1) == text
        assert reopened.chain_head() == head  # no row changed: the chain proves the same
        assert [p for p in reopened.verify() if p.severity == "error"] == []
    finally:
        reopened.close()


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


def commit(store: Store, html: str, *, when: str, flag: bool = False):
    """What a live check hands the store: one outcome, with a planner that diffs against
    whichever predecessor the store finds (and says which one it was asked for)."""
    from monitor.diff import compare
    from monitor.store import Candidate, ChangePlan, CheckOutcome

    document = extract_html(html)
    asked: list[int] = []

    def plan(old, new_doc, reverted_to):
        asked.append(old.seq)
        result = compare(store.document(old), new_doc, flag=flag)
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


# ----------------------------------------------------------------------------- the hash chain (format 2)


def history(store: Store) -> None:
    """Two versions and their change, with its alert, as a live check stores them."""
    commit(store, "<p>We keep your data.</p>", when="2026-01-01T00:00:00.000Z")
    ai = "We may use your personal data to develop and train artificial intelligence (AI) models."
    commit(store, f"<p>We keep your data for ten years.</p><p>{ai}</p>", when="2026-01-02T00:00:00.000Z", flag=True)
    assert next(store.db.query("select n_flags from changes"))["n_flags"] >= 1


def errors_of(store: Store, **kwargs) -> list[str]:
    return [str(p) for p in store.verify(**kwargs) if p.severity == "error"]


FORGERIES = {
    "stated date": ("update versions set effective_date = '2020-01-01' where seq = 2", "t1@2", "effective_date"),
    "title": ("update versions set title = 'Cookie notice' where seq = 1", "t1@1", "title"),
    "provenance": ("update versions set provenance = 'wayback', provenance_ref = '20200101' where seq = 2", "t1@2", "provenance"),
    "final URL": ("update fetches set final_url = 'https://evil.example/' where outcome = 'new-version'", "t1@1", "fetch"),
    "raw URL": ("update versions set raws = replace(raws, 'example.com', 'evil.example') where seq = 2", "t1@2", "raws"),
    "change flags": ("update changes set diff = json_set(diff, '$.changes[1].flags', json('[]'))", "change 1", "diff_sha256"),
    "flag counts": ("update changes set n_flags = 0, categories = null, max_severity = null", "change 1", "categories, max_severity, n_flags"),
    "change substantive": ("update changes set substantive = 0", "change 1", "substantive"),
    "superseded mark": ("update changes set superseded_by = -1", "change 1", "superseded mark"),
    "change deleted": ("delete from changes", "change 1", "row deleted"),
    "newest version deleted with its change": (
        "delete from changes; delete from fetches where version_id = 2; delete from versions where seq = 2", "version 2", "row deleted",
    ),
    "unknown record format": ("update chain set record = replace(record, '\"v\":2', '\"v\":9') where position = 1", "chain entry 1", "format 9"),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_verify_names_each_forged_fact(store: Store, forgery: str) -> None:
    history(store)
    assert errors_of(store) == []
    sql, where, what = FORGERIES[forgery]
    store.db.conn.executescript(sql)
    errors = errors_of(store)
    assert any(where in e and what in e for e in errors), errors


def test_deleting_the_tail_is_detected_by_every_copy_of_the_head(store: Store) -> None:
    """The newest version and its change deleted with their chain entries and the meta head
    rewritten to match: the alert rows, the heartbeat and a head from an email still name
    entries that no longer exist."""
    history(store)
    head_before = store.chain_head()
    alert_head = next(store.db.query("select chain_head from alerts"))["chain_head"]
    assert alert_head == head_before and head_before.startswith("3:")  # version, version, change
    store.set_meta("heartbeat", json.dumps({"at": utcnow(), "pid": 1, "checks": 2, "chain": head_before}))
    store.db.execute("delete from alerts")  # the forger thinks of the alerts too
    store.db.execute("delete from changes")
    store.db.execute("delete from fetches where version_id = (select id from versions where seq = 2)")
    store.db.execute("delete from versions where seq = 2")
    store.db.execute("delete from chain where position > 1")
    store.db.execute("update meta set value = (select '1:' || hash from chain where position = 1) where key = 'chain_head'")
    store.db.conn.commit()
    errors = errors_of(store)
    assert any("heartbeat" in e and "tail was deleted" in e for e in errors), errors
    store.set_meta("heartbeat", "")
    assert errors_of(store) == []  # nothing left in the database disagrees...
    errors = errors_of(store, heads=[("--head", head_before)])  # ...but the email's copy does
    assert any("--head" in e and "chain ends at 1" in e for e in errors), errors


def test_verify_cli_checks_a_head_from_an_email(tmp_path: Path, store: Store) -> None:
    from .conftest import write_config

    history(store)
    config = write_config(tmp_path, [{"id": "t1", "service": "S", "document": "terms", "url": "https://example.com/p"}])
    ok = run_cli("--config", str(config), "verify", "--head", store.chain_head())
    assert ok.code == 0 and f"chain head {store.chain_head()}" in ok.out, ok.out + ok.err
    future = run_cli("--config", str(config), "verify", "--head", "9:" + "a" * 64)
    assert future.code == 1 and "--head: names chain entry 9 but the chain ends at 3" in future.out
    bad = run_cli("--config", str(config), "verify", "--head", "latest")
    assert bad.code == 2 and bad.err.startswith("error: --head latest: expected N:SHA256") and "Traceback" not in bad.err


V1_STORE = Path(__file__).resolve().parent / "fixtures" / "store-v1"  # written by the format-1 code (commit ae9e1d5)


def v1_copy(tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(V1_STORE, tmp_path / "v1")
    return tmp_path / "v1"


def test_migration_from_format_1_covers_the_history(tmp_path: Path) -> None:
    root = v1_copy(tmp_path)
    with Store(root / "monitor.db", root / "snapshots") as store:
        assert store.get_meta("schema_version") == "2"
        assert errors_of(store) == []
        kinds = [r["kind"] for r in store.db.query("select kind from chain order by position")]
        assert kinds.count("version") == 6 and kinds.count("change") == 4
        store.db.execute("update versions set title = 'forged' where target_id = 'a' and seq = 3")
        store.db.conn.commit()
        assert any("a@3" in e and "title" in e for e in errors_of(store))


def test_migration_refuses_a_format_1_chain_that_does_not_verify(tmp_path: Path) -> None:
    import sqlite3

    from monitor.errors import StoreError

    root = v1_copy(tmp_path)
    conn = sqlite3.connect(root / "monitor.db")
    conn.execute("update versions set observed_at = '2023-06-01T00:00:00.000Z' where target_id = 'b' and seq = 2")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=r"does not verify, so it is not migrated.*b@2: chain hash does not match"):
        Store(root / "monitor.db", root / "snapshots")
    (root / "targets.yaml").write_text("targets:\n  - {id: a, service: S, document: terms, url: 'https://example.com/a'}\n")
    refused = run_cli("--config", str(root / "targets.yaml"), "verify")
    assert refused.code != 0 and "Traceback" not in refused.err
    assert refused.err.startswith("error: ") and "restore the database from a backup" in refused.err and len(refused.err.splitlines()) == 1
    conn = sqlite3.connect(root / "monitor.db")
    assert conn.execute("select value from meta where key = 'schema_version'").fetchone()[0] == "1"
    assert conn.execute("select count(*) from sqlite_master where name = 'chain'").fetchone()[0] == 0
    conn.close()


def test_unextracted_bytes_whose_text_is_no_longer_the_latest_become_a_revert(store: Store) -> None:
    """A check skipped extraction (same bytes as its last fetch, text of version 1) while
    another process stored version 2: under the lock its text is not the latest, so it is a
    new version (a revert to 1), its text read back from the store."""
    from monitor.store import Candidate, CheckOutcome

    v1, _ = commit(store, "<p>One.</p>", when="2026-01-01T00:00:00.000Z")
    commit(store, "<p>Two.</p>", when="2026-01-01T00:00:01.000Z")
    asked: list[int] = []

    def plan(old, document, reverted_to):
        from monitor.diff import compare
        from monitor.store import ChangePlan

        asked.append(old.seq)
        result = compare(store.document(old), document, flag=False)
        if reverted_to is not None:
            result.mark_reverted(reverted_to)
        return ChangePlan(result)

    when = "2026-01-01T00:00:02.000Z"
    record = FetchRecord("t1", when, when, "https://example.com/p", text_sha256=v1.version.text_sha256)
    done = store.commit_check(CheckOutcome("t1", candidate=Candidate(record, [RawPart("https://example.com/p", b"<p>One.</p>", "html")], None, plan)))
    assert done.outcome == "new-version" and done.version.seq == 3 and done.version.reverted_to == 1 and asked == [2]
    assert store.read_text(done.version) == "One.\n"
    assert [s.kind for s in done.result.signals] == ["reverted"]
    assert errors_of(store) == []
