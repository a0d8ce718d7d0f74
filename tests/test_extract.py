"""Extraction: HTML fixtures and the clauses they must give, Markdown, text, PDF, dates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.errors import FetchError, InputError
from monitor.extract import (
    extract_bytes,
    extract_file,
    extract_html,
    extract_markdown,
    find_effective_date,
    comparison_form,
    parse_stored,
    sniff_format,
    strip_tracking,
)

from .conftest import FIXTURES, corpus_file, make_pdf

CASES = yaml.safe_load((FIXTURES / "extract_cases.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_html_fixture(case: dict[str, Any]) -> None:
    doc = extract_html(case["html"], base_url=case.get("base_url"), select=case.get("select", ()), remove=case.get("remove", ()))
    got = [[c.kind, c.level, c.plain if False else c.text] for c in doc.clauses]
    want = [[k, lvl, t] for k, lvl, t in case["expect"]]
    # stored text escapes markdown-looking paragraphs; the clause text itself is the page's
    assert got == want
    for index, section in (case.get("sections") or {}).items():
        assert list(doc.clauses[int(index)].section) == section
    again = parse_stored(doc.to_markdown())
    assert [(c.kind, c.level, c.text, c.section) for c in again.clauses] == [(c.kind, c.level, c.text, c.section) for c in doc.clauses]


def test_select_that_matches_nothing_is_a_typed_failure() -> None:
    with pytest.raises(FetchError) as info:
        extract_html("<p>x</p>", select=["#policy"])
    assert info.value.kind == "selector-missing"


def test_same_page_gives_byte_identical_text() -> None:
    html = corpus_file("LinkedIn", "Privacy Policy", "snapshots", "effective-2020-08-11.html").read_bytes()
    first = extract_bytes(html, "html", base_url="https://www.linkedin.com/legal/privacy-policy").to_markdown()
    second = extract_bytes(html, "html", base_url="https://www.linkedin.com/legal/privacy-policy").to_markdown()
    assert first == second and len(first) > 20000


def test_linkedin_raw_snapshot_extraction() -> None:
    doc = extract_file(corpus_file("LinkedIn", "Privacy Policy", "snapshots", "effective-2020-08-11.html"))
    assert doc.effective_date == "2020-08-11"
    headings = [c.plain for c in doc.clauses if c.kind == "heading"]
    assert "Your Privacy Matters" in headings and "Table of Contents" in headings
    texts = " ".join(c.plain for c in doc.clauses)
    raw = corpus_file("LinkedIn", "Privacy Policy", "snapshots", "effective-2020-08-11.html").read_text()
    banner = "use essential and non-essential cookies"
    assert banner in raw and banner not in texts  # the cookie banner is not policy text
    # clauses under 2. How We Use Your Data carry that heading in their section path
    assert any("How We Use Your Data" in " ".join(c.section) for c in doc.clauses if c.kind == "paragraph")


def test_markdown_corpus_file_gives_clauses_with_sections() -> None:
    doc = extract_file(corpus_file("LinkedIn", "Privacy Policy", "2024-09-19T06-10-13Z.md"))
    assert doc.effective_date == "2024-09-18"
    assert doc.effective_text == "Effective September 18, 2024"
    clause = next(c for c in doc.clauses if "develop and train artificial intelligence (AI) models" in c.text)
    assert clause.kind == "paragraph"
    assert "2. How We Use Your Data" in clause.section
    assert all(c.text == c.text.strip() and "\n" not in c.text for c in doc.clauses)


def test_markdown_whitespace_only_differences_give_the_same_text() -> None:
    a = extract_file(corpus_file("LinkedIn", "Privacy Policy", "2025-09-18T06-13-39Z.md")).to_markdown()
    b = extract_file(corpus_file("LinkedIn", "Privacy Policy", "2025-09-23T06-14-17Z.md")).to_markdown()
    assert a == b


def test_tracking_parameters_stripped() -> None:
    assert strip_tracking("https://explore.zoom.us/x/?optimizely_user_id=78da") == "https://explore.zoom.us/x/"
    assert strip_tracking("https://a.example/p?id=3&utm_source=x&gclid=1") == "https://a.example/p?id=3"
    assert strip_tracking("https://a.example/p?policy=privacy") == "https://a.example/p?policy=privacy"
    signed = "https://bucket.s3.amazonaws.com/policy.pdf?X-Amz-Signature=ab&X-Amz-Date=1&version=2"
    assert strip_tracking(signed) == "https://bucket.s3.amazonaws.com/policy.pdf?version=2"
    zoom_a = extract_file(corpus_file("Zoom", "Terms of Service", "2025-07-23T18-22-53Z.md")).to_markdown()
    zoom_b = extract_file(corpus_file("Zoom", "Terms of Service", "2025-07-24T06-23-29Z.md")).to_markdown()
    assert zoom_a == zoom_b and "optimizely" not in zoom_a


def test_fold_typography_for_comparison() -> None:
    assert comparison_form("We don\u2019t \u201csell\u201d data \u2014 ever\u2026") == comparison_form("We don't \"sell\" data - ever...")
    assert comparison_form("a\u00a0 b") == "a b"


@pytest.mark.parametrize(
    ("text", "date"),
    [
        ("Effective September 18, 2024", "2024-09-18"),
        ("Last updated: 3 May 2024", "2024-05-03"),
        ("Last Updated: Sept. 29, 2023", "2023-09-29"),
        ("Effective date: 2024-11-20", "2024-11-20"),
        ("Date d'entrée en vigueur : 18 septembre 2024", "2024-09-18"),
        ("Dernière mise à jour : 1er janvier 2025", "2025-01-01"),
        ("Mis à jour le 03/11/2025", "2025-11-03"),
        ("Stand: 18. September 2024", "2024-09-18"),
        ("Zuletzt aktualisiert am 01.02.2024", "2024-02-01"),
        ("Última actualización: 18 de septiembre de 2024", "2024-09-18"),
        ("Fecha de entrada en vigor: 20 de noviembre de 2024", "2024-11-20"),
        ("Last modified March 2024", "2024-03"),
    ],
)
def test_effective_dates_in_four_languages(text: str, date: str) -> None:
    found = find_effective_date([text])
    assert found is not None and found[0] == date


def test_no_date_without_a_date_phrase() -> None:
    assert find_effective_date(["We were founded on May 5, 2003 in Mountain View."]) is None


def test_plain_text_and_pdf_inputs(tmp_path: Path) -> None:
    txt = tmp_path / "policy.txt"
    txt.write_text("PRIVACY POLICY\n\nLast updated: 3 May 2024\n\nWe collect data\nyou give us.\n\n- one\n- two\n")
    doc = extract_file(txt)
    assert [(c.kind, c.text) for c in doc.clauses] == [
        ("heading", "PRIVACY POLICY"), ("paragraph", "Last updated: 3 May 2024"),
        ("paragraph", "We collect data you give us."), ("list-item", "one"), ("list-item", "two"),
    ]
    pdf = tmp_path / "policy.pdf"
    pdf.write_bytes(make_pdf(["Privacy Policy", "", "Effective date: 2024-09-18", "", "We may use your data to train AI models."]))
    doc = extract_file(pdf)
    assert doc.effective_date == "2024-09-18"
    assert [c.text for c in doc.clauses] == ["Privacy Policy", "Effective date: 2024-09-18", "We may use your data to train AI models."]


def test_sniffing_and_unusable_files(tmp_path: Path) -> None:
    assert sniff_format(b"<!DOCTYPE html><html>", "x") == "html"
    assert sniff_format(b"Title\n=====\n\ntext", "x") == "markdown"
    assert sniff_format(b"%PDF-1.7", "x") == "pdf"
    assert sniff_format(b"just words", "x") == "text"
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00")
    with pytest.raises(InputError, match="binary"):
        extract_file(binary)
    with pytest.raises(InputError, match="no such file"):
        extract_file(tmp_path / "missing.html")
    with pytest.raises(InputError, match="is a directory"):
        extract_file(tmp_path)


def test_markdown_links_and_emphasis() -> None:
    doc = extract_markdown("# Title\n\nWe **may** use [your data](https://x.example/?utm_source=a) _now_.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert [(c.kind, c.text) for c in doc.clauses] == [
        ("heading", "Title"), ("paragraph", "We may use [your data](https://x.example/) now."),
        ("table-row", "a | b"), ("table-row", "1 | 2"),
    ]


def test_simple_selectors_match_what_soupsieve_matches() -> None:
    """The consent selectors are matched without soupsieve (monitor/selectors.py); on a page
    holding an element for each of them and near misses, both pick the same elements."""
    import soupsieve
    from bs4 import BeautifulSoup

    from monitor.extract import consent_selectors
    from monitor.selectors import parse_all, parse_simple

    near = [
        '<div id="onetrust-consent-sdk-x">a</div>', '<div class="cookie-banner-x">b</div>',
        '<div class="x cookie-banner">c</div>', '<div class="CookieConsentBox">d</div>',
        '<section role="dialog" aria-label="Cookies">e</section>', '<div role="dialog" aria-label="Cookies">f</div>',
        '<div data-nosnippet="true">g</div>', '<div data-nosnippet="true" role="dialog">h</div>',
        '<div aria-label="cookie banner">i</div>', '<div aria-label="Cookie Banner">j</div>',
        '<span id="sp_message_container_123">k</span>', '<div id="xsp_message_container">l</div>',
        '<p class="cc-window extra">m</p>', '<div data-testid="BottomBar2">n</div>',
    ]
    for selector in consent_selectors():
        simple = parse_simple(selector)
        assert simple is not None, selector
        tag = simple.tag or "div"
        attrs = [f'id="{i}"' for i in simple.ids] + ([f'class="{" ".join(simple.classes)}"'] if simple.classes else [])
        attrs += [f'{name}="{"pre" if op == "*=" else ""}{value}{"post" if op in ("*=", "^=") else ""}"' for name, op, value in simple.attrs]
        near.append(f"<{tag} {' '.join(attrs)}>{selector}</{tag}>")
    soup = BeautifulSoup("<html><body>" + "".join(near) + "</body></html>", "lxml")
    compiled = soupsieve.compile(", ".join(consent_selectors()))
    simple_all = parse_all(consent_selectors())
    assert simple_all is not None
    by_soupsieve = [t for t in soup.find_all(True) if compiled.match(t)]
    by_simple = [t for t in soup.find_all(True) if any(s.matches(t) for s in simple_all)]
    assert by_simple == by_soupsieve
    assert len(by_simple) >= len(consent_selectors())  # each selector's own element, and some near misses
    assert parse_simple("div > p") is None and parse_simple("a:not(.x)") is None and parse_simple("") is None
