"""`monitor report`, `history`, `show`: contracts, filters, and the HTML report in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.store import Store
from monitor.targets import load_config

from .conftest import POLICY, Site, page, run_cli, write_config

AI_CLAUSE = "We may use your personal data to develop and train artificial intelligence (AI) models."
HOSTILE = "Contact us at &lt;script&gt;window.__pwned = 1&lt;/script&gt; or &lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt; today."


@pytest.fixture
def history(tmp_path: Path, site: Site) -> Path:
    """Two targets with a few recorded changes: one flagged, one with hostile text."""
    site.set("/a", page(*POLICY))
    site.set("/b", page(*POLICY[:3], title="Terms"))
    config = write_config(tmp_path, [
        {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": site.url("/a")},
        {"id": "acme-terms", "service": "Acme", "document": "terms", "url": site.url("/b")},
    ])
    assert run_cli("--config", str(config), "check").code == 0
    site.set("/a", page(*POLICY, AI_CLAUSE))
    site.set("/b", page(*POLICY[:3], HOSTILE, title="Terms"))
    assert run_cli("--config", str(config), "check").code == 0
    site.set("/a", page(*POLICY[:4], AI_CLAUSE))  # a clause removed, nothing flagged newly
    assert run_cli("--config", str(config), "check").code == 0
    return config


def test_json_report_contract_and_filters(history: Path) -> None:
    result = run_cli("--config", str(history), "report", "--format", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["since"] is None
    changes = data["changes"]
    assert len(changes) == 3
    for change in changes:
        for key in ("id", "target", "service", "document", "url", "detected_at", "old_version", "new_version",
                    "substantive", "old", "new", "signals", "changes"):
            assert key in change, key
    flagged = [c for c in changes if any(x["flags"] for x in c["changes"])]
    assert [c["target"] for c in flagged] == ["acme-privacy"]
    assert flagged[0]["old_version"] == 1 and flagged[0]["new_version"] == 2
    # flagged first within the day
    assert changes[0]["id"] == flagged[0]["id"]
    only = json.loads(run_cli("--config", str(history), "report", "--format", "json", "--flagged").out)["changes"]
    assert [c["id"] for c in only] == [flagged[0]["id"]]
    by_category = json.loads(run_cli("--config", str(history), "report", "--format", "json", "--category", "ai-training").out)["changes"]
    assert [c["id"] for c in by_category] == [flagged[0]["id"]]
    terms = json.loads(run_cli("--config", str(history), "report", "--format", "json", "--target", "acme-terms").out)["changes"]
    assert [c["target"] for c in terms] == ["acme-terms"]
    none_since = json.loads(run_cli("--config", str(history), "report", "--format", "json", "--since", "2999-01-01").out)
    assert none_since["changes"] == []
    # the spliced JSON equals what parsing each stored diff gives
    with Store.open(load_config(history)) as store:
        from monitor.report import ReportQuery, select_changes

        assert select_changes(store, ReportQuery()) == changes


def test_mark_reviewed_then_only_new_changes(history: Path, site: Site) -> None:
    first = run_cli("--config", str(history), "report", "--mark-reviewed")
    assert first.code == 0 and "3 changes, 1 flagged" in first.out
    assert "No changes to review." in run_cli("--config", str(history), "report").out
    site.set("/b", page(*POLICY[:2], title="Terms"))
    run_cli("--config", str(history), "check")
    later = run_cli("--config", str(history), "report")
    assert "1 change, 0 flagged" in later.out and "Acme · Terms" in later.out
    assert "4 changes, 1 flagged" in run_cli("--config", str(history), "report", "--all").out


def test_text_and_markdown_reports(history: Path) -> None:
    text = run_cli("--config", str(history), "report", "--all")
    assert text.code == 0
    assert "⚑ ai-training (high, added)" in text.out  # what happened to the statement
    assert "      Now says it" in text.out  # and its one-line summary
    assert "{+" + AI_CLAUSE + "+}" in text.out  # not a terminal: plain markers, no colour codes
    assert "\x1b[" not in text.out
    markdown = run_cli("--config", str(history), "report", "--all", "--format", "markdown")
    assert markdown.out.startswith("# Privacy monitor report")
    assert markdown.out.count("| Acme · ") == 3  # one summary row per change
    assert "**ai-training**" in markdown.out


def test_history_and_show(history: Path) -> None:
    result = run_cli("--config", str(history), "history", "acme-privacy", "--format", "json")
    versions = json.loads(result.out)["versions"]
    assert [v["seq"] for v in versions] == [1, 2, 3]
    assert versions[1]["n_flags"] == 1 and versions[1]["categories"] == "ai-training"
    assert versions[0]["change_id"] is None and versions[0]["provenance"] == "live"
    table = run_cli("--config", str(history), "history", "acme-privacy")
    assert table.code == 0 and "ai-training" in table.out
    change_id = versions[1]["change_id"]
    shown = run_cli("--config", str(history), "show", str(change_id))
    assert shown.code == 0 and "develop and train artificial intelligence (AI) models" in shown.out
    as_json = json.loads(run_cli("--config", str(history), "show", str(change_id), "--format", "json").out)
    assert as_json["id"] == change_id and as_json["changes"][0]["kind"] == "added"
    missing = run_cli("--config", str(history), "show", "999")
    assert missing.code == 2 and missing.err.strip() == "error: no change with id 999; list them with `monitor report` or `monitor history TARGET`"
    unknown = run_cli("--config", str(history), "history", "nope")
    assert unknown.code == 2 and "no target with id 'nope'" in unknown.err


@pytest.mark.browser
def test_html_report_in_a_real_browser(history: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from monitor.browser import find_browser, launch_args

    out = tmp_path / "report.html"
    result = run_cli("--config", str(history), "report", "--all", "--format", "html", "-o", str(out))
    assert result.code == 0, result.err
    html = out.read_text()
    assert "<script>window.__pwned" not in html and "&lt;script&gt;window.__pwned" in html
    info = find_browser()
    assert info is not None
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=info.executable, args=launch_args())
        context = browser.new_context()
        context.on("request", lambda request: requests.append(request.url))
        tab = context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(out.as_uri())
        assert tab.evaluate("typeof window.__pwned") == "undefined"  # nothing captured ran
        assert tab.locator("article.change").count() == 3
        flagged = tab.locator(".clause.flagged")
        assert flagged.count() == 1
        assert "develop and train artificial intelligence (AI) models" in flagged.inner_text()
        assert tab.locator(".clause.flagged .tag").inner_text() == "ai-training"
        assert tab.locator("#summary tr[data-target='acme-privacy'] .changes-count").inner_text() == "2"
        assert tab.locator("#summary tr[data-target='acme-privacy'] .flags-count").inner_text() == "1"
        assert tab.locator("#summary tr[data-target='acme-terms'] .flags-count").inner_text() == "0"
        assert tab.locator("#timelines svg circle").count() == 5  # 3 + 2 versions
        # the hostile text is shown as text
        assert "<script>window.__pwned = 1</script>" in tab.locator("article[data-target='acme-terms']").inner_text()
        # the filter (the report's own script) works
        tab.check("#only-flagged")
        assert tab.locator("article.change:not(.hidden)").count() == 1
        assert tab.locator("#shown").inner_text() == "1"
        tab.uncheck("#only-flagged")
        tab.select_option("#target", "acme-terms")
        assert tab.locator("article.change:not(.hidden)").count() == 1
        shot = tmp_path / "report.png"
        tab.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert errors == []
    assert requests == [out.as_uri()]  # no network request beyond the file itself


def test_mark_reviewed_marks_only_what_the_filters_selected(history: Path) -> None:
    marked = run_cli("--config", str(history), "report", "--target", "acme-terms", "--mark-reviewed")
    assert marked.code == 0 and "marked 1 change reviewed" in marked.err
    left = json.loads(run_cli("--config", str(history), "report", "--format", "json").out)["changes"]
    assert [c["target"] for c in left] == ["acme-privacy", "acme-privacy"]  # the filtered-out ones stay to review
    again = run_cli("--config", str(history), "report", "--format", "json", "--mark-reviewed")
    assert "marked 2 changes reviewed" in again.err and json.loads(again.out)["changes"]  # stdout stays the JSON
    assert "No changes to review." in run_cli("--config", str(history), "report").out


def test_small_cli_faults(history: Path) -> None:
    unknown = run_cli("--config", str(history), "report", "--category", "ai")
    assert unknown.code == 2 and "ai-training, ai-third-party, opt-out-scope" in unknown.err
    missing = run_cli("--config", str(history), "report", "--target", "zzzz")
    assert missing.code == 2 and "known ids: acme-privacy, acme-terms" in missing.err
    status = run_cli("--config", str(history), "status")
    assert status.code == 0 and all(len(line) <= 80 for line in status.out.splitlines()), status.out
    assert "acme-privacy " in status.out and "acme-terms " in status.out  # whole ids
    wide = run_cli("--config", str(history), "status", "--wide")
    assert "last change" in wide.out


def test_status_fits_80_columns_with_long_ids_and_failures(tmp_path: Path, site: Site) -> None:
    long_id = "linkedin-generative-ai-help-page-europe"
    config = write_config(tmp_path, [
        {"id": long_id, "service": "LinkedIn", "document": "faq", "url": site.url("/missing")},
        {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": site.url("/missing-too")},
    ])
    run_cli("--config", str(config), "check")
    status = run_cli("--config", str(config), "status")
    assert status.code == 0
    assert all(len(line) <= 80 for line in status.out.splitlines()), status.out
    assert long_id in status.out and "…" not in status.out.split(long_id)[0]
