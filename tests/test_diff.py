"""The clause-level diff: alignment, cosmetic changes, signals, and `monitor diff`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.diff import compare, word_spans
from monitor.extract import extract_file, extract_html, extract_markdown

from .conftest import corpus_file, in_process, run_cli


def html(*paragraphs: str, date: str | None = None) -> str:
    head = f"<p>Last updated: {date}</p>" if date else ""
    return "<h1>Privacy Policy</h1>" + head + "<h2>How we use data</h2>" + "".join(f"<p>{p}</p>" for p in paragraphs)


BASE = [
    "We collect the information you provide when you register.",
    "We use your data to provide and improve the Services.",
    "You can delete your account at any time in your settings.",
]


def diff(old: str, new: str):
    return compare(extract_html(old), extract_html(new))


def test_linkedin_september_2024_raises_ai_training_on_the_clause() -> None:
    old = extract_file(corpus_file("LinkedIn", "Privacy Policy", "2024-08-01T18-10-11Z.md"))
    new = extract_file(corpus_file("LinkedIn", "Privacy Policy", "2024-09-19T06-10-13Z.md"))
    result = compare(old, new)
    assert result.substantive
    assert (result.old_effective_date, result.new_effective_date) == ("2024-07-31", "2024-09-18")
    flagged = [c for c in result.changes if any(f.category == "ai-training" for f in c.flags)]
    assert len(flagged) == 1
    change = flagged[0]
    assert change.kind == "modified" and "develop and train artificial intelligence (AI) models" in change.new
    assert "2. How We Use Your Data" in change.section
    flag = next(f for f in change.flags if f.category == "ai-training")
    assert flag.evidence == "develop and train artificial intelligence (AI) models" and flag.side == "new" and flag.severity == "high"
    inserted = "".join(s.text for s in change.spans if s.op == "insert")
    assert "develop and train artificial intelligence (AI) models" in inserted


@pytest.mark.parametrize(
    ("folder", "old", "new"),
    [
        (("LinkedIn", "Privacy Policy"), "2025-09-18T06-13-39Z.md", "2025-09-23T06-14-17Z.md"),  # whitespace
        (("Zoom", "Terms of Service"), "2025-07-23T18-22-53Z.md", "2025-07-24T06-23-29Z.md"),  # tracking parameters
        (("Zoom", "Terms of Service"), "2025-07-24T06-23-29Z.md", "2025-07-24T18-25-18Z.md"),
        (("LinkedIn", "Privacy Policy"), "2021-10-07T17-30-12Z.md", "2021-10-20T08-03-01Z.md"),  # quotes lost by a converter
        (("Facebook", "Privacy Policy"), "2024-06-26T06-05-23Z.md", "2024-07-02T18-05-52Z.md"),  # content recorded twice
    ],
)
def test_noise_in_the_corpus_is_not_substantive(folder: tuple[str, str], old: str, new: str) -> None:
    result = compare(extract_file(corpus_file(*folder, old)), extract_file(corpus_file(*folder, new)))
    assert not result.substantive
    assert all(c.cosmetic for c in result.changes)
    assert result.flags == []


def test_kinds_added_removed_modified_moved() -> None:
    result = diff(html(*BASE), html(BASE[2], BASE[0], "We sell nothing.", BASE[1].replace("improve", "personalise")))
    kinds = sorted((c.kind, c.cosmetic) for c in result.changes)
    assert kinds == [("added", False), ("modified", False), ("moved", True)]
    modified = next(c for c in result.changes if c.kind == "modified")
    assert [(s.op, s.text) for s in modified.spans if s.op != "equal"] == [("delete", "improve"), ("insert", "personalise")]


def test_cosmetic_changes() -> None:
    typography = diff(html("We don't \"sell\" data - ever."), html("We don\u2019t \u201csell\u201d data \u2014 ever."))
    assert not typography.substantive and [c.reason for c in typography.changes] == ["typography"]
    whitespace = diff(html("We  use\n data."), html("We use data."))
    assert whitespace.changes == []
    date_line = diff(html(*BASE, date="3 May 2024"), html(*BASE, date="9 June 2024"))
    assert not date_line.substantive and [c.reason for c in date_line.changes] == ["date line"]
    split = diff(html("We collect data. We use it."), "<h1>Privacy Policy</h1><h2>How we use data</h2><p>We collect data.</p><p>We use it.</p>")
    assert not split.substantive and {c.reason for c in split.changes} == {"markup"}
    tracking = compare(
        extract_markdown("See [our FAQ](https://ex.com/faq?utm_source=mail&trk=a)."),
        extract_markdown("See [our FAQ](https://ex.com/faq?utm_source=web)."),
    )
    assert tracking.changes == []
    link_target = compare(extract_markdown("See [our FAQ](https://ex.com/faq)."), extract_markdown("See [our FAQ](https://ex.com/ai-faq)."))
    # The words a reader sees are the same (issue: "link target or link markup alone" is cosmetic);
    # the new target is still in the word diff for whoever reads the change.
    assert not link_target.substantive and [c.reason for c in link_target.changes] == ["link"]
    assert any(s.op == "insert" and "ai-faq" in s.text for s in link_target.changes[0].spans)


def test_silent_update_and_dates() -> None:
    silent = diff(html(*BASE, date="3 May 2024"), html(*BASE[:2], "We keep your data forever.", date="3 May 2024"))
    assert [s.kind for s in silent.signals] == ["silent-update"]
    backwards = diff(html(*BASE, date="3 May 2024"), html(*BASE[:2], "We keep your data forever.", date="1 May 2024"))
    assert "went back" in backwards.signals[0].message
    announced = diff(html(*BASE, date="3 May 2024"), html(*BASE[:2], "We keep your data forever.", date="9 June 2024"))
    assert announced.signals == []


def test_flags_only_on_changed_clauses_and_never_from_elsewhere() -> None:
    ai = "We use your content to train our generative AI models."
    unchanged_ai = diff(html(ai, *BASE), html(ai, *BASE[:2], "You can close your account."))
    assert unchanged_ai.substantive and unchanged_ai.flags == []  # the AI clause did not change
    moved_ai = diff(html(ai, *BASE), html(*BASE, ai))
    assert moved_ai.flags == [] and {c.kind for c in moved_ai.changes} == {"moved"}
    removed_promise = diff(html("We do not use your content to train AI models.", *BASE), html(*BASE))
    flags = removed_promise.flags
    assert flags and flags[0].category == "ai-training" and flags[0].side == "old"


def test_product_features_and_fraud_detection_are_not_ai_training() -> None:
    result = diff(html(*BASE), html(*BASE, "Ask our AI writing assistant to draft a post for you.",
                                    "We use machine learning to detect spam and fraud."))
    assert [f.category for f in result.flags if f.category == "ai-training"] == []


def test_word_spans_keep_links_whole() -> None:
    spans = word_spans("See [FAQ](https://a.example/x) now.", "See [FAQ](https://a.example/y) now.")
    assert [(s.op, s.text) for s in spans if s.op != "equal"] == [("delete", "](https://a.example/x)"), ("insert", "](https://a.example/y)")]


def test_diff_command_formats_and_contract(tmp_path: Path) -> None:
    old = corpus_file("LinkedIn", "Privacy Policy", "2024-08-01T18-10-11Z.md")
    new = corpus_file("LinkedIn", "Privacy Policy", "2024-09-19T06-10-13Z.md")
    code, out, _ = in_process("diff", str(old), str(new), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"substantive", "old", "new", "signals", "changes"}
    assert data["old"] == {"source": str(old), "effective_date": "2024-07-31"}
    change = data["changes"][0]
    assert set(change) >= {"kind", "cosmetic", "section", "old", "new", "spans", "flags"}
    assert all(c["kind"] in ("added", "removed", "modified", "moved") for c in data["changes"])
    flag_keys = {k for c in data["changes"] for f in c["flags"] for k in f}
    assert flag_keys == {
        "category", "severity", "rule", "evidence", "side",  # the original contract, kept
        "change", "changes", "summary", "before", "after", "details",  # what happened to the AI statement
    }
    code, text, _ = in_process("diff", str(old), str(new))
    assert code == 0 and text.index("⚑ ai-training") < text.index("~ modified in “Privacy Policy > Introduction”")
    assert "{+may use your personal data to improve" in text
    code, page, _ = in_process("diff", str(old), str(new), "--format", "html", "-o", str(tmp_path / "d.html"))
    assert code == 0 and "ai-training" in (tmp_path / "d.html").read_text()
    code, md, _ = in_process("diff", str(old), str(new), "--format", "markdown")
    assert code == 0 and "**ai-training**" in md
    same = in_process("diff", str(old), str(old), "--format", "json")
    assert same[0] == 0 and json.loads(same[1])["changes"] == []


def test_diff_command_errors(tmp_path: Path) -> None:
    binary = tmp_path / "photo.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    text = tmp_path / "a.txt"
    text.write_text("We collect data.\n")
    cases = [
        ((str(tmp_path / "missing.html"), str(text)), "no such file"),
        ((str(binary), str(text)), "looks binary"),
        ((str(tmp_path), str(text)), "is a directory"),
    ]
    for args, message in cases:
        result = run_cli("diff", *args)
        assert result.code == 2 and message in result.err and "Traceback" not in result.err
        assert len(result.err.strip().splitlines()) == 1


def test_diff_of_stored_versions_and_unknown_ones(tmp_path: Path) -> None:
    from .conftest import write_config

    config = write_config(tmp_path, [{"id": "t", "service": "S", "document": "terms", "url": "https://example.com/t"}])
    result = run_cli("--config", str(config), "diff", "t@1", "t@latest")
    assert result.code == 2 and "no database" in result.err
    from monitor.store import FetchRecord, RawPart, Store, utcnow
    from monitor.targets import load_config

    cfg = load_config(config)
    with Store.open(cfg) as store:
        store.sync_targets(cfg.targets)
        for body in ("<p>We collect data.</p>", "<p>We collect and sell data.</p>"):
            now = utcnow()
            store.add_version("t", [RawPart("u", body.encode(), "html")], extract_html(body), observed_at=now, fetch=FetchRecord("t", now, now, "u"))
    ok = run_cli("--config", str(config), "diff", "t@1", "t@2", "--format", "json")
    assert ok.code == 0 and json.loads(ok.out)["old"]["source"] == "t@1"
    for ref, message in (("t@7", "t has versions 1 to 2"), ("t@latest~5", "only 2 version"), ("zz@1", "no versions stored for 'zz'")):
        bad = run_cli("--config", str(config), "diff", ref, "t@2")
        assert bad.code == 2 and message in bad.err, bad.err


# ------------------------------------------------------------------ cosmetic: what a reader sees


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("See [our help page](https://help.example.com/en/articles/1) for details.",
         "See [our help page](https://help.example.com/articles/1?lang=en) for details.", "link"),
        ("Contact our Data Protection Officer for details.",
         "Contact [our Data Protection Officer](https://example.com/dpo) for details.", "link"),
        ("We may share data with members of our group.", "We may share data with Members of our group.", "capitalisation"),
        ("Nous pouvons utiliser les donnees de votre profil.", "Nous pouvons utiliser les données de votre profil.", "diacritics"),
        ("This policy takes effect on 8 July 2026 for all members.", "This policy takes effect on July 8, 2026 for all members.", "date format"),
    ],
)
def test_edits_a_reader_cannot_see_are_cosmetic(old: str, new: str, reason: str) -> None:
    result = compare(extract_markdown(f"# Policy\n\n{old}\n\nOther text stays.\n"), extract_markdown(f"# Policy\n\n{new}\n\nOther text stays.\n"))
    [change] = result.changes
    assert (change.kind, change.cosmetic, change.reason) == ("modified", True, reason)
    assert not result.substantive


def test_a_rewritten_date_line_is_one_modified_line() -> None:
    result = compare(
        extract_markdown("# Policy\n\nEffective 8 July 2026\n\nWe collect data.\n"),
        extract_markdown("# Policy\n\nLast updated: 3 May 2027\n\nWe collect data.\n"),
    )
    [change] = result.changes
    assert (change.kind, change.cosmetic, change.reason) == ("modified", True, "date line")


@pytest.mark.parametrize("label", ["Key Terms", "Table of contents", "Back to top"])
def test_page_furniture_added_or_removed_is_cosmetic(label: str) -> None:
    body = "# Policy\n\nWe collect data.\n\nWe use data.\n"
    with_label = f"# Policy\n\n{label}\n\nWe collect data.\n\nWe use data.\n"
    for old, new in ((body, with_label), (with_label, body)):
        [change] = compare(extract_markdown(old), extract_markdown(new)).changes
        assert (change.cosmetic, change.reason) == (True, "furniture")


def test_a_real_word_change_stays_substantive() -> None:
    result = compare(
        extract_markdown("# Policy\n\nWe may share data with members of our group.\n"),
        extract_markdown("# Policy\n\nWe may sell data to members of our group.\n"),
    )
    assert result.substantive and result.changes[0].reason is None


def test_a_reworded_ai_sentence_is_reported_not_flagged() -> None:
    result = compare(
        extract_markdown("# Policy\n\nWe use your posts to train our AI models.\n"),
        extract_markdown("# Policy\n\nYour posts are used to train our AI models.\n"),
    )
    [change] = result.changes
    assert change.flags == []
    assert [r["category"] for r in change.reworded] == ["ai-training"]
    assert change.to_dict()["reworded"][0]["after"].startswith("Your posts are used")


def test_the_service_naming_itself_is_not_a_third_party() -> None:
    old = extract_markdown("# Policy\n\nWe collect data.\n")
    new = extract_markdown("# Policy\n\nWe collect data.\n\nWe may share public posts with Google affiliates and OpenAI to train their AI models.\n")
    [flag] = [f for f in compare(old, new, service="Google").flags if f.category == "ai-third-party"]
    assert "OpenAI" in flag.summary and "Google" not in flag.summary
    [flag] = [f for f in compare(old, new).flags if f.category == "ai-third-party"]  # unknown service: both named
    assert "Google" in flag.summary
