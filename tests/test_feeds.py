"""Atom feeds: `monitor report --format atom` and the files the daemon rewrites, read back
with a real feed parser (feedparser) and checked for the elements RFC 4287 requires."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import feedparser
import pytest
import yaml

from monitor.feeds import change_urn, write_feeds
from monitor.flags import Flag
from monitor.store import Store
from monitor.targets import Config, load_config

from .conftest import POLICY, Site, in_process, page, run_cli, write_config
from .test_alerts import record_change
from .test_daemon import AI_CLAUSE, DaemonProcess, daemons, start  # noqa: F401 - daemons is a fixture

AI_SUMMARY = "The policy now says your data trains AI models."
REPORT_URL = "https://reports.example.org/privacy/report.html"


def ai_flag() -> Flag:
    return Flag("ai-training", "high", "ai-training-use", "develop and train artificial intelligence", "new", summary=AI_SUMMARY)


def make_config(directory: Path, *, report_url: str | None = REPORT_URL, feeds: dict[str, Any] | None = None) -> Config:
    targets = [
        {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": "https://acme.example/privacy"},
        {"id": "acme-terms", "service": "Acme", "document": "terms", "url": "https://acme.example/terms"},
        {"id": "zeta-privacy", "service": "Zeta Corp", "document": "privacy-policy", "url": "https://zeta.example/privacy"},
    ]
    path = write_config(directory, targets, alerts={"report_url": report_url} if report_url else None)
    if feeds is not None:
        data = yaml.safe_load(path.read_text())
        data["feeds"] = feeds
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


def parse_valid(xml: bytes | str) -> Any:
    """Parsed by feedparser without a complaint, with every element Atom requires."""
    parsed = feedparser.parse(xml)
    assert not parsed.bozo, f"feed parser complained: {parsed.get('bozo_exception')}"
    assert parsed.version == "atom10"
    feed = parsed.feed
    assert feed.get("id") and feed.get("title") and feed.get("updated_parsed"), feed
    for entry in parsed.entries:
        assert entry.get("id") and entry.get("title") and entry.get("updated_parsed") and entry.get("link"), entry
    return parsed


def two_changes(config: Config) -> tuple[int, int]:
    flagged = record_change(config, POLICY, [*POLICY, AI_CLAUSE], flags={0: [ai_flag()]})
    plain = record_change(config, POLICY, [*POLICY[:-1], "You can delete your account at any time."], target_index=2)
    return flagged, plain


def test_report_atom_validates_and_carries_links_summaries_flags_and_stable_ids(workdir: Path) -> None:
    config = make_config(workdir)
    flagged, plain = two_changes(config)
    code, _, err = in_process("--config", str(config.path), "report", "--all", "--format", "atom", "-o", "changes.atom")
    assert code == 0, err
    first = (workdir / "changes.atom").read_bytes()
    parsed = parse_valid(first)
    assert [e.link for e in parsed.entries] == [f"{REPORT_URL}#change-{plain}", f"{REPORT_URL}#change-{flagged}"]  # newest first
    with Store.open(config) as store:
        store_id = store.get_meta("store_id")
    assert [e.id for e in parsed.entries] == [change_urn(store_id, plain), change_urn(store_id, flagged)]
    ai = parsed.entries[1]
    assert ai.title == "Acme · Privacy Policy changed: AI training clause added (1 flag)"
    assert AI_SUMMARY in ai.summary and "Uses your data to train AI (high)" in ai.summary
    assert [t.term for t in ai.tags] == ["ai-training"]
    assert AI_SUMMARY in ai.content[0].value and "<li>" in ai.content[0].value
    assert "Zeta Corp" in parsed.entries[0].title and not parsed.entries[0].get("tags")
    # the same changes give the same bytes: readers see nothing new in a rewrite
    code, again, _ = in_process("--config", str(config.path), "report", "--all", "--format", "atom")
    assert code == 0 and again.encode() == first


def test_without_report_url_an_entry_links_the_document(workdir: Path) -> None:
    config = make_config(workdir, report_url=None)
    two_changes(config)
    result = run_cli("--config", str(config.path), "report", "--all", "--format", "atom", "--target", "zeta-privacy")
    assert result.code == 0, result.err
    parsed = parse_valid(result.out)
    [entry] = parsed.entries
    assert entry.link == "https://zeta.example/privacy"
    assert parsed.feed.id.endswith(":feed:target/zeta-privacy")


def test_feed_files_per_target_service_and_all_are_replaced_whole(workdir: Path) -> None:
    config = make_config(workdir, feeds={"dir": "public/feeds", "entries": 10, "url": "https://reports.example.org/feeds"})
    flagged, plain = two_changes(config)
    with Store.open(config) as store:
        written = write_feeds(store, config)
    root = workdir / "public" / "feeds"
    names = sorted(str(p.relative_to(root)) for p in written)
    assert names == ["all.atom", "service/acme.atom", "service/zeta-corp.atom",
                     "target/acme-privacy.atom", "target/acme-terms.atom", "target/zeta-privacy.atom"]
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == names  # no temporary file left
    entries = {name: [e.link.rsplit("-", 1)[1] for e in parse_valid((root / name).read_bytes()).entries] for name in names}
    assert entries["all.atom"] == [str(plain), str(flagged)]
    assert entries["service/acme.atom"] == entries["target/acme-privacy.atom"] == [str(flagged)]
    assert entries["service/zeta-corp.atom"] == [str(plain)] and entries["target/acme-terms.atom"] == []
    parsed = feedparser.parse((root / "all.atom").read_bytes())
    assert any(link.rel == "self" and link.href == "https://reports.example.org/feeds/all.atom" for link in parsed.feed.links)
    # a change to one target rewrites its feeds only
    before = {name: (root / name).stat().st_mtime_ns for name in names}
    third = record_change(config, POLICY, [*POLICY, "We keep logs for 30 days."], target_index=1)
    with Store.open(config) as store:
        rewritten = sorted(str(p.relative_to(root)) for p in write_feeds(store, config, ["acme-terms"]))
    assert rewritten == ["all.atom", "service/acme.atom", "target/acme-terms.atom"]
    assert (root / "service/zeta-corp.atom").stat().st_mtime_ns == before["service/zeta-corp.atom"]
    assert [e.link.rsplit("-", 1)[1] for e in parse_valid((root / "target/acme-terms.atom").read_bytes()).entries] == [str(third)]


@pytest.mark.parametrize("feeds, field", [({"entries": 0}, "feeds.entries"), ({"dirr": "x"}, "feeds.dirr"), ({"url": "ftp://x"}, "feeds.url")])
def test_a_bad_feeds_setting_is_one_line_naming_the_field(workdir: Path, feeds: dict[str, Any], field: str) -> None:
    path = write_config(workdir, [{"id": "a", "service": "A", "document": "terms", "url": "https://a.example/"}])
    path.write_text(path.read_text() + yaml.safe_dump({"feeds": feeds}))
    result = run_cli("--config", str(path), "validate")
    assert result.code != 0 and "Traceback" not in result.err
    [line] = [ln for ln in (result.out + result.err).splitlines() if field in ln]
    assert "targets.yaml" in line


@pytest.mark.slow
def test_the_daemon_rewrites_the_feeds_after_a_change(tmp_path: Path, site: Site, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    site.set("/p", page(*POLICY))
    path = write_config(tmp_path, [{"id": "p", "service": "S", "document": "terms", "url": site.url("/p"), "schedule": "1s"}], defaults={"jitter": 0})
    path.write_text(path.read_text() + yaml.safe_dump({"feeds": {"dir": "feeds"}}))
    d = start(daemons, path, tmp_path / "daemon.log")
    d.wait_event("feeds-written")  # at start: the files exist before any change
    assert parse_valid((tmp_path / "feeds" / "target" / "p.atom").read_bytes()).entries == []
    d.wait_event("new-version")
    site.set("/p", page(*POLICY, AI_CLAUSE))
    d.wait_event("feeds-written", count=2, timeout=60)
    assert d.stop() == 0
    for name in ("all.atom", "service/s.atom", "target/p.atom"):
        [entry] = parse_valid((tmp_path / "feeds" / name).read_bytes()).entries
        assert entry.link == site.url("/p") and "changed" in entry.title


def test_a_check_that_records_a_change_rewrites_its_feeds(workdir: Path, site: Site) -> None:
    site.set("/p", page(*POLICY))
    path = write_config(workdir, [{"id": "p", "service": "S", "document": "terms", "url": site.url("/p")}])
    path.write_text(path.read_text() + yaml.safe_dump({"feeds": {"dir": "feeds"}}))
    assert in_process("--config", str(path), "check")[0] == 0
    assert not (workdir / "feeds").exists()  # a first version is no change
    site.set("/p", page(*POLICY, AI_CLAUSE))
    assert in_process("--config", str(path), "check")[0] == 0
    [entry] = parse_valid((workdir / "feeds" / "target" / "p.atom").read_bytes()).entries
    assert "AI training clause added" in entry.title
    (workdir / "feeds" / "target" / "p.atom").unlink()
    (workdir / "feeds" / "target").rmdir()
    (workdir / "feeds" / "target").write_text("not a directory")
    site.set("/p", page(*POLICY, AI_CLAUSE, "We keep logs for two years."))
    code, _, err = in_process("--config", str(path), "check")
    assert code == 0 and "feeds: cannot write" in err and "Traceback" not in err
