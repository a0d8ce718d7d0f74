"""Watching a service as a whole: `monitor discover` (linked help pages, ranked).

Pages are served by a real threaded HTTP server on 127.0.0.1 from synthetic fixtures
(tests/fixtures/discover, each marked as such); the policy is captured by a real `monitor
check` into a real SQLite store, and discovery fetches through the real fetcher.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from monitor.targets import load_config

from .conftest import FIXTURES, Site, in_process, run_cli, write_config

DISCOVER = FIXTURES / "discover"


def serve_fixtures(site: Site) -> None:
    for path in DISCOVER.rglob("*.html"):
        site.set("/" + path.relative_to(DISCOVER).as_posix(), path.read_bytes())


def fixture_config(workdir: Path, site: Site) -> Path:
    path = write_config(workdir, [
        {"id": "fixture-privacy", "service": "Fixture", "document": "privacy-policy", "url": site.url("/legal/privacy.html"), "tags": ["fixture", "ai"]},
        {"id": "fixture-terms", "service": "Fixture", "document": "terms", "url": site.url("/legal/terms.html")},
    ])
    # a comment the edit must keep, and one after the list
    text = "# Fixture services (kept by monitor discover --add)\n" + path.read_text(encoding="utf-8") + "# end of file\n"
    path.write_text(text, encoding="utf-8")
    return path


def test_discover_ranks_ai_training_and_opt_out_pages_first(workdir: Path, site: Site) -> None:
    serve_fixtures(site)
    fixture_config(workdir, site)
    code, out, err = in_process("check", "fixture-privacy", "--no-alerts")
    assert code == 0, err
    served_before = sum(site.hits.values())

    code, out, err = in_process("discover", "fixture-privacy", "--format", "json")
    assert code == 0, err
    result = json.loads(out)
    urls = [c["url"].rsplit("/", 1)[-1] for c in result["candidates"] if c["error"] is None]
    # the twelve linked help pages, each fetched once; not the watched terms, not another site, not an image
    assert sorted(urls) == sorted(p.name for p in (DISCOVER / "help").glob("*.html") if p.name != "ai-models.html")
    unreadable = {c["url"]: c["error"] for c in result["candidates"] if c["error"] is not None}
    assert unreadable == {site.url("/"): "http-404", site.url("/help"): "http-404"}  # the nav links, listed last
    assert urls[:2] == ["ai-training.html", "opt-out.html"]
    assert urls[2] == "ai-sharing.html"
    assert result["already_watched"] == [site.url("/legal/terms.html")] and result["not_followed"] == 0
    assert sum(site.hits.values()) - served_before == 14  # no fetch of the policy itself (stored capture)
    assert all(site.hits[f"/help/{name}"] == 1 for name in urls)
    top = result["candidates"][0]
    categories = {e["category"] for e in top["evidence"]}
    assert {"ai-training", "opt-out-scope"} <= categories
    opt_out = result["candidates"][1]
    assert any(e["words"].startswith("Opting out means that we won't use your personal data") for e in opt_out["evidence"])
    assert all(c["score"] == 0 for c in result["candidates"] if c["url"].endswith(("jobs.html", "premium.html", "password.html")))

    code, out, err = in_process("discover", "fixture-privacy")
    assert code == 0, err
    first = out.splitlines()[1]
    assert "ai-training.html" in first and "Data for Generative AI Improvement" in first
    assert "ai-training: “" in out.splitlines()[2]


def test_discover_depth_two_follows_links_of_linked_pages(workdir: Path, site: Site) -> None:
    serve_fixtures(site)
    fixture_config(workdir, site)
    assert in_process("check", "fixture-privacy", "--no-alerts")[0] == 0
    code, out, err = in_process("discover", "fixture-privacy", "--depth", "2", "--format", "json")
    assert code == 0, err
    by_name = {c["url"].rsplit("/", 1)[-1]: c for c in json.loads(out)["candidates"]}
    assert by_name["ai-models.html"]["depth"] == 2
    assert by_name["ai-models.html"]["found_on"].endswith("ai-training.html")
    assert site.hits["/help/ai-models.html"] == 1
    code, _, err = in_process("discover", "fixture-privacy", "--depth", "3")
    assert code == 2 and "--depth" in err


def test_discover_add_appends_keeping_comments_and_validates(workdir: Path, site: Site) -> None:
    serve_fixtures(site)
    path = fixture_config(workdir, site)
    before = path.read_text(encoding="utf-8")
    assert in_process("check", "fixture-privacy", "--no-alerts")[0] == 0

    refused = run_cli("discover", "fixture-privacy", "--add", cwd=workdir)  # stdin is not a terminal
    assert refused.code == 2
    assert "pass --yes" in refused.err and "Traceback" not in refused.err
    assert path.read_text(encoding="utf-8") == before

    code, out, err = in_process("discover", "fixture-privacy", "--add", "--top", "3", "--yes")
    assert code == 0, err
    after = path.read_text(encoding="utf-8")
    assert after.startswith(before.removesuffix("# end of file\n"))  # every line kept, in place
    assert "# Fixture services (kept by monitor discover --add)" in after and "# end of file" in after
    config = load_config(path)
    added = [t for t in config.targets if t.document == "faq"]
    assert [t.url.rsplit("/", 1)[-1] for t in added] == ["ai-training.html", "opt-out.html", "ai-sharing.html"]
    assert all(t.service == "Fixture" and t.tags == ("fixture", "ai") for t in added)
    assert in_process("validate")[0] == 0
    # now watched: a second discovery leaves them out
    code, out, err = in_process("discover", "fixture-privacy", "--format", "json")
    names = [c["url"].rsplit("/", 1)[-1] for c in json.loads(out)["candidates"] if c["error"] is None]
    assert "ai-training.html" not in names and len(names) == 9

    # --pick: ranks of the list, whatever they speak of
    code, _, err = in_process("discover", "fixture-privacy", "--add", "--pick", "9", "--yes")
    assert code == 0, err
    assert len(load_config(path).targets) == 6
    code, _, err = in_process("discover", "fixture-privacy", "--add", "--pick", "99", "--yes")
    assert code == 2 and "ranks go from 1 to 8" in err


def test_discover_without_a_stored_capture_says_what_to_do(workdir: Path, site: Site) -> None:
    serve_fixtures(site)
    fixture_config(workdir, site)
    code, _, err = in_process("discover", "fixture-privacy")
    assert code == 2
    assert "monitor check fixture-privacy" in err and "--fetch" in err
    code, out, err = in_process("discover", "fixture-privacy", "--fetch", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["candidates"][0]["url"].endswith("ai-training.html")


@pytest.mark.parametrize("url, allowed", [
    ("https://www.linkedin.com/help/linkedin/answer/a5538339", True),
    ("https://de.linkedin.com/legal/privacy-policy", True),
    ("https://lnkd.in/abc", True),
    ("https://www.microsoft.com/privacy", False),
])
def test_help_domains_are_data(url: str, allowed: bool) -> None:
    from monitor.discover import allowed_host, settings

    assert allowed_host(url, "https://www.linkedin.com/legal/privacy-policy", settings()["help_domains"]["LinkedIn"]) is allowed


@pytest.mark.slow
def test_the_daemon_reports_new_linked_pages_once_as_a_discovered_alert(workdir: Path, site: Site) -> None:
    import sqlite3

    from .conftest import wait_for
    from .test_alerts import Hook, start_daemon, stop_daemon

    serve_fixtures(site)
    hook = Hook()
    try:
        path = write_config(workdir, [
            {"id": "fixture-privacy", "service": "Fixture", "document": "privacy-policy", "url": site.url("/legal/privacy.html"),
             "tags": ["fixture"], "discover": "7d"},
            {"id": "fixture-terms", "service": "Fixture", "document": "terms", "url": site.url("/legal/terms.html")},
        ], alerts={"webhook": {"url": hook.url}})
        before = path.read_text(encoding="utf-8")
        daemon = start_daemon(path)
        try:
            assert wait_for(lambda: any(json.loads(body).get("event") == "discovered" for _, body in hook.requests), timeout=120), \
                "no discovered alert"
        finally:
            err = stop_daemon(daemon)
        assert "discovered target=fixture-privacy new=3" in err, err
        [payload] = [json.loads(body) for _, body in hook.requests if json.loads(body).get("event") == "discovered"]
        lines = payload["detail"].splitlines()
        assert lines[0].startswith("3 linked page(s) of Fixture · Privacy Policy speak of AI")
        assert lines[1].startswith(site.url("/help/ai-training.html")) and lines[2].startswith(site.url("/help/opt-out.html"))
        assert path.read_text(encoding="utf-8") == before  # reported, never added
        db = sqlite3.connect(workdir / "monitor.db")
        assert db.execute("select count(*) from discovered where target_id = 'fixture-privacy'").fetchone()[0] == 3
        db.close()

        # due again (the week is over): the same pages are not reported twice
        import asyncio

        from monitor.discover import discovery_due, scheduled_discovery
        from monitor.fetch import Fetcher
        from monitor.flags import load_rules
        from monitor.store import Store

        config = load_config(path)
        target = config.target("fixture-privacy")
        with Store.open(config) as store:
            now = time.time() + 8 * 86400
            assert discovery_due(store, target, now) and not discovery_due(store, target, time.time())

            async def again() -> list[object]:
                async with Fetcher(config.defaults) as fetcher:
                    return list(await scheduled_discovery(config, store, fetcher, load_rules(strict=False), target, now=now))

            assert asyncio.run(again()) == []
            assert store.db.execute("select count(*) from alerts where kind = 'discovered'").fetchone()[0] == 1
    finally:
        hook.close()


def test_discover_keeps_to_the_host_gate(workdir: Path, site: Site) -> None:
    """One request at a time to the host and a pause between them, as for checks."""
    serve_fixtures(site)
    starts: list[float] = []
    for path in (DISCOVER / "help").glob("*.html"):
        body = path.read_bytes()

        def serve(body: bytes = body) -> bytes:
            starts.append(time.monotonic())
            return body

        site.set("/help/" + path.name, serve)
    write_config(workdir, [
        {"id": "fixture-privacy", "service": "Fixture", "document": "privacy-policy", "url": site.url("/legal/privacy.html")},
    ], defaults={"host_delay": "0.2s", "host_concurrency": 1})
    assert in_process("check", "fixture-privacy", "--no-alerts")[0] == 0
    code, out, err = in_process("discover", "fixture-privacy", "--format", "json")
    assert code == 0, err
    assert len(starts) == 12
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 0.18, gaps
