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
from monitor.render.view import readable_segments


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
    assert text.count("**") == 0 and text.count("~~") == 0, re.findall(r".{20}(?:\*\*|~~).{20}", text)[:5]
    assert reader.nested == 0  # no mark inside a mark
    # a mark never starts or ends on a space, and is never empty
    assert not re.search(r"<(strong|s|del|ins)>(\s|</)", html)
    assert not re.search(r"\s</(strong|s|del|ins)>", html)
    # only changed words are marked: clause by clause, the marked words are exactly the
    # words the diff inserted or deleted (links' changed addresses read "old/new link")
    from monitor.render.markdown import segments_markdown
    from monitor.render.view import ClauseView

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
    from monitor.render.markdown import segments_markdown

    assert segments_markdown(segments) == "See the [salary](<https://a.example/s>) ranges."
    spaced = readable_segments([
        {"op": "equal", "text": "with the help of"}, {"op": "insert", "text": " AI, "},
        {"op": "equal", "text": "automated systems"}, {"op": "insert", "text": ","}, {"op": "equal", "text": " and inferences"},
        {"op": "delete", "text": " we make"}, {"op": "equal", "text": ", so"},
    ])
    markdown = segments_markdown(spaced)
    assert "**AI,** automated" in markdown and "~~we make~~" in markdown
    rendered = MarkdownIt("commonmark").enable("strikethrough").render(markdown)
    assert "**" not in rendered and "~~" not in rendered
