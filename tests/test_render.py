"""The one view of a change and its writers, on real output: the demo's LinkedIn history
diffed for real, then rendered and read back as a reader's tool would read it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from markdown_it import MarkdownIt

from monitor.demo import demo_versions, render_page
from monitor.diff import compare
from monitor.extract import extract_html
from monitor.report import render_report_markdown, render_report_text
from monitor.render.markdown import segments_markdown
from monitor.render.view import ClauseView, readable_segments


def _entries() -> list[dict[str, Any]]:
    """Every consecutive pair of the demo's versions as report entries (flags included)."""
    versions = demo_versions()
    docs = [extract_html(render_page(v.markdown).decode(), select=["main"]) for v in versions]
    entries = []
    for index, (old, new) in enumerate(zip(docs, docs[1:]), start=1):
        result = compare(old, new)
        if not result.substantive:
            continue
        entries.append({
            "id": index, "target": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy",
            "url": "https://www.linkedin.com/legal/privacy-policy", "detected_at": versions[index].name[:10] + "T00:00:00.000Z",
            "observed_at": versions[index].name[:10] + "T00:00:00.000Z", "old_version": index, "new_version": index + 1,
            "provenance": "live", "reviewed_at": None, "summary": None, "evaluated_at": None, **result.to_dict(),
        })
    return entries


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    return _entries()


class _Reader(HTMLParser):
    """The text a reader sees, and which of it is inside a change mark."""

    MARKS = ("strong", "s", "del", "ins")

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.marked: list[str] = []
        self.open: list[str] = []
        self.nested = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.MARKS and any(t in self.MARKS for t in self.open):
            self.nested += 1
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if any(t in self.MARKS for t in self.open):
            self.marked.append(data)


def test_markdown_report_renders_cleanly_and_marks_only_changed_words(entries: list[dict[str, Any]]) -> None:
    source = render_report_markdown(entries)
    html = MarkdownIt("commonmark").enable(["strikethrough", "table"]).render(source)
    reader = _Reader()
    reader.feed(html)
    text = "".join(reader.text)
    # the only literal ** or ~~ a reader sees are those the page itself shows ("Update to our terms**")
    page_text = "".join(s.text for e in entries for c in e["changes"] if not c["cosmetic"] for s in ClauseView.of(c).segments)
    page_text += "".join(f["evidence"] + f.get("summary", "") for e in entries for c in e["changes"] for f in c.get("flags") or [])
    assert text.count("**") <= page_text.count("**") and text.count("~~") <= page_text.count("~~"), re.findall(r".{20}(?:\*\*|~~).{20}", text)[:5]
    assert reader.nested == 0  # no mark inside a mark
    # a mark never starts or ends on a space, and is never empty
    assert not re.search(r"<(strong|s|del|ins)>(\s|</)", html)
    assert not re.search(r"\s</(strong|s|del|ins)>", html)
    # only changed words are marked: clause by clause, the marked words are exactly the
    # words the diff inserted or deleted (links' changed addresses read "old/new link")

    checked = 0
    for entry in entries:
        for change in entry["changes"]:
            if change["cosmetic"] or change["kind"] != "modified":
                continue
            clause = ClauseView.of(change)
            one = _Reader()
            one.feed(MarkdownIt("commonmark").enable("strikethrough").render(segments_markdown(clause.segments)))
            expected = [s.text if not s.target else ("new link" if s.op == "insert" else "old link") for s in clause.segments if s.op != "equal"]
            assert re.findall(r"\w+", " ".join(one.marked)) == re.findall(r"\w+", " ".join(expected)), change["new"][:80]
            checked += 1
    assert checked > 50
    # the September 2024 change is there with its AI clause marked as inserted
    assert "<strong>ai-training</strong>" in html


def test_text_report_has_no_empty_or_idle_marks(entries: list[dict[str, Any]]) -> None:
    text = render_report_text(entries)
    assert "{++}" not in text and "[--]" not in text
    assert "{+ " not in text and "[- " not in text and " +}" not in text and " -]" not in text
    same = [m for m in re.finditer(r"\[-([^\]]*)-\]\s*\{\+([^}]*)\+\}", text) if m.group(1) == m.group(2)]
    assert same == []  # a link removed and added again with the same words is no change


def test_a_link_readded_with_the_same_words_is_not_a_change() -> None:
    segments = readable_segments([
        {"op": "equal", "text": "See the "}, {"op": "delete", "text": "[salary](https://a.example/s)"},
        {"op": "insert", "text": "[salary](https://a.example/s)"}, {"op": "equal", "text": " ranges."},
    ])
    assert [(s.op, s.text) for s in segments] == [("equal", "See the "), ("equal", "salary"), ("equal", " ranges.")]
    assert segments_markdown(segments) == "See the [salary](<https://a.example/s>) ranges."
    moved = readable_segments([
        {"op": "equal", "text": "See the "}, {"op": "delete", "text": "[salary](https://a.example/old)"},
        {"op": "insert", "text": "[salary](https://a.example/new)"}, {"op": "equal", "text": " ranges."},
    ])
    assert [(s.op, s.text) for s in moved if not s.target] == [("equal", "See the "), ("equal", "salary"), ("equal", " ranges.")]
    assert [(s.op, s.href) for s in moved if s.target] == [("delete", "https://a.example/old"), ("insert", "https://a.example/new")]
    assert segments_markdown(moved) == "See the [salary](<https://a.example/new>) ~~[old link](<https://a.example/old>)~~ **[new link](<https://a.example/new>)** ranges."
    spaced = readable_segments([
        {"op": "equal", "text": "with the help of"}, {"op": "insert", "text": " AI, "},
        {"op": "equal", "text": "automated systems"}, {"op": "insert", "text": ","}, {"op": "equal", "text": " and inferences"},
        {"op": "delete", "text": " we make"}, {"op": "equal", "text": ", so"},
    ])
    markdown = segments_markdown(spaced)
    assert "**AI,** automated" in markdown and "~~we make~~" in markdown
    rendered = MarkdownIt("commonmark").enable("strikethrough").render(markdown)
    assert "**" not in rendered and "~~" not in rendered


LONG_URL = "https://www.linkedin.com/legal/privacy/eu?" + "&".join(f"parameter{i}=value{i}" for i in range(80))
HOSTILE = [
    {"kind": "added", "cosmetic": False, "reason": None, "section": "Hostile", "old": None, "spans": [], "flags": [],
     "new": "A word: " + "x" * 10_000 + " ends here."},
    {"kind": "added", "cosmetic": False, "reason": None, "section": "Hostile", "old": None, "spans": [], "flags": [],
     "new": f"See [this page]({LONG_URL}) or {LONG_URL} directly."},
    {"kind": "added", "cosmetic": False, "reason": None, "section": "Hostile \u202eevil", "old": None, "spans": [], "flags": [],
     "new": "Open the attachment \u202efdp.exe for details."},
]


def _rows(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Report rows (query_changes) for entries, with a hostile change added."""
    import json

    hostile = {**entries[-1], "id": 999, "target": "a-very-long-target-id-that-goes-on-" + "and-on-" * 6,
               "changes": [*entries[-1]["changes"], *HOSTILE], "url": LONG_URL}
    rows = []
    for entry in [*entries, hostile]:
        diff = {k: entry[k] for k in ("substantive", "old", "new", "signals", "changes")}
        flags = [f for c in entry["changes"] for f in c.get("flags") or []]
        rows.append({
            "id": entry["id"], "target_id": entry["target"], "old_seq": entry["old_version"], "new_seq": entry["new_version"],
            "detected_at": entry["detected_at"], "observed_at": entry["observed_at"], "n_flags": len(flags),
            "categories": ",".join(sorted({f["category"] for f in flags})), "signals": json.dumps(entry["signals"]),
            "summary": None, "service": entry["service"], "document": entry["document"], "url": entry["url"],
            "old_effective": entry["old"].get("effective_date"), "new_effective": entry["new"].get("effective_date"),
            "provenance": "live", "diff": json.dumps(diff), "html": None,
        })
    return rows


@pytest.mark.browser
def test_report_and_email_never_scroll_sideways_in_chromium(entries: list[dict[str, Any]], tmp_path: Any) -> None:
    from playwright.sync_api import sync_playwright

    from monitor.browser import find_browser, launch_args
    from monitor.render.email import ChangeView, render_change
    from monitor.render.html import render_report_html
    from monitor.targets import load_config

    from .conftest import write_config

    report = tmp_path / "report.html"
    report.write_text(render_report_html(_rows(entries), generated="2024-09-19 10:00"), encoding="utf-8")
    config = load_config(write_config(tmp_path, [{"id": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy", "url": "https://www.linkedin.com/legal/privacy-policy"}],
                                      alerts={"smtp": {"host": "127.0.0.1", "port": 25, "security": "none"}, "from": "monitor@example.org", "to": ["a@example.org"],
                                              "report_url": "https://intranet.example/report.html"}))
    september = next(e for e in entries if e["new"].get("effective_date") == "2024-09-18" and e["old"].get("effective_date") != "2024-09-18")
    diff = {**{k: september[k] for k in ("substantive", "old", "new", "signals")}, "changes": [*HOSTILE, *september["changes"]]}
    target = {"id": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy", "url": LONG_URL, "title": "LinkedIn · Privacy Policy"}
    mail = render_change(config, ChangeView(14, target, "2024-09-19T06:10:13.000Z", 14, 15, diff)).html
    assert "<bdi>Open the attachment \u202efdp.exe for details.</bdi>" in mail
    info = find_browser()
    assert info is not None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=info.executable, args=launch_args())
        for width in (390, 1280):
            tab = browser.new_page(viewport={"width": width, "height": 800})
            tab.goto(report.as_uri())
            sizes = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], f"report at {width}px: {sizes}"
            assert tab.locator("bdi").count() >= 2  # the overridden text is isolated
            tab.set_content(mail)
            sizes = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], f"email at {width}px: {sizes}"
            tab.close()
        tab = browser.new_page(viewport={"width": 1280, "height": 800})
        tab.goto(report.as_uri())
        tab.emulate_media(media="print")
        assert tab.locator(".controls").is_hidden()  # print CSS: no filters on paper
        browser.close()
