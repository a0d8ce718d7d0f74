"""policy-lag and policy-silent on the change itself: `monitor show` and `monitor report` (text,
JSON, Markdown, HTML), through the one view every writer reads.

LinkedIn's real privacy-policy history (../shared/corpus) beside the synthetic dated help page
of tests/fixtures/service, imported by the real `monitor import ota` into a real SQLite store
(the fixture `linkedin` of tests/test_timeline.py)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .conftest import in_process
from .test_timeline import linkedin  # noqa: F401 - the fixture

LAG = (
    "the help page (linkedin-genai-faq) said it on 2024-08-14; the privacy policy (linkedin-privacy) said it on 2024-09-19 "
    "(stated date 2024-09-18), 36 days later: it may use your data to train AI"
)


def _policy_change(workdir: Path) -> int:
    """The change that brought the privacy policy of 2024-09-19 (what `monitor show 14` shows)."""
    code, out, err = in_process("history", "linkedin-privacy", "--format", "json")
    assert code == 0, err
    [row] = [v for v in json.loads(out)["versions"] if v["observed_at"].startswith("2024-09-19")]
    assert row["change_id"] is not None
    return int(row["change_id"])


def _help_change(workdir: Path) -> int:
    code, out, err = in_process("history", "linkedin-genai-faq", "--format", "json")
    assert code == 0, err
    versions = json.loads(out)["versions"]
    assert len(versions) == 2
    return int(versions[1]["change_id"])


def test_show_reports_the_36_day_lag_on_the_policy_change(linkedin: Path) -> None:  # noqa: F811
    change = _policy_change(linkedin)
    code, out, err = in_process("show", str(change))
    assert code == 0, err
    assert f"! policy-lag (ai-training): {LAG}" in out
    assert "! policy-lag (ai-third-party): the help page (linkedin-genai-faq) said it on 2024-08-14;" in out
    assert "policy-silent" not in out  # that one is on the help page's change

    code, out, err = in_process("show", str(change), "--format", "json")
    assert code == 0, err
    entry = json.loads(out)
    lags = {s["category"]: s for s in entry["signals"] if s["kind"] == "policy-lag"}
    assert set(lags) == {"ai-training", "ai-third-party"}
    training = lags["ai-training"]
    assert training["message"] == LAG and training["days"] == pytest.approx(36, abs=0.5)
    assert training["other"]["target"] == "linkedin-genai-faq" and training["other"]["document"] == "faq"
    assert training["other"]["date"] == "2024-08-14" and training["other"]["change_id"] == _help_change(linkedin)


def test_show_puts_policy_silent_on_the_help_pages_latest_change(linkedin: Path) -> None:  # noqa: F811
    code, out, err = in_process("show", str(_help_change(linkedin)), "--format", "json")
    assert code == 0, err
    [silent] = [s for s in json.loads(out)["signals"] if s["kind"] == "policy-silent"]
    assert silent["category"] == "opt-out-scope" and silent["other"] is None and silent["since"] == "2024-08-14"
    assert silent["message"].startswith("the help page (linkedin-genai-faq) has said it since 2024-08-14")
    assert "no policy document of the service says it yet" in silent["message"]
    assert not [s for s in json.loads(out)["signals"] if s["kind"] == "policy-lag"]  # the help page said it first


def test_json_report_has_the_lag_signal_on_the_later_change_only(linkedin: Path) -> None:  # noqa: F811
    change = _policy_change(linkedin)
    code, out, err = in_process("report", "--all", "--format", "json")
    assert code == 0, err
    changes = {c["id"]: c for c in json.loads(out)["changes"]}
    assert change in changes
    lags = [s for s in changes[change]["signals"] if s["kind"] == "policy-lag"]
    training = next(s for s in lags if s["category"] == "ai-training")
    assert training["days"] == pytest.approx(36, abs=0.5) and training["other"]["target"] == "linkedin-genai-faq" and training["other"]["date"] == "2024-08-14"
    carrying = sorted(i for i, c in changes.items() if any(s["kind"] == "policy-lag" for s in c["signals"]))
    assert carrying == [change]  # both lags are on the policy's change of 2024-09-19, nowhere else
    silent = [i for i, c in changes.items() if any(s["kind"] == "policy-silent" for s in c["signals"])]
    assert silent == [_help_change(linkedin)]


class _Signals(HTMLParser):
    """The signal marks of each article of the report page: article id -> [(attributes, text)]."""

    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, list[tuple[dict[str, str], str]]] = {}
        self._article = ""
        self._signal: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "article":
            self._article = attributes.get("id", "")
        elif tag == "span" and "signal" in attributes.get("class", "").split():
            self._signal, self._text = attributes, []

    def handle_data(self, data: str) -> None:
        if self._signal is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._signal is not None:
            self.found.setdefault(self._article, []).append((self._signal, "".join(self._text)))
            self._signal = None


def test_html_report_shows_the_lag_on_the_policy_changes_article(linkedin: Path) -> None:  # noqa: F811
    change = _policy_change(linkedin)
    code, _, err = in_process("report", "--all", "--format", "html", "-o", "report.html")
    assert code == 0, err
    parser = _Signals()
    parser.feed((linkedin / "report.html").read_text(encoding="utf-8"))
    marks = parser.found[f"change-{change}"]
    training = next(attrs for attrs, _ in marks if attrs.get("data-category") == "ai-training")
    assert training["class"] == "signal policy-lag" and training["data-days"] == "36"
    assert training["data-other-target"] == "linkedin-genai-faq" and training["data-other-date"] == "2024-08-14"
    assert f"policy-lag (ai-training): {LAG}" in [text for _, text in marks]
    lagged = sorted(a for a, found in parser.found.items() if any("policy-lag" in attrs["class"] for attrs, _ in found))
    assert lagged == [f"change-{change}"]
    [(attrs, text)] = [m for m in parser.found[f"change-{_help_change(linkedin)}"] if "policy-silent" in m[0]["class"]]
    assert attrs["data-category"] == "opt-out-scope" and text.startswith("policy-silent (opt-out-scope): the help page")


def test_markdown_report_shows_the_lag(linkedin: Path) -> None:  # noqa: F811
    change = _policy_change(linkedin)
    code, out, err = in_process("report", "--all", "--format", "markdown")
    assert code == 0, err
    section = out[out.index(f"## \\#{change} LinkedIn · Privacy Policy"):]
    section = section[: section.index("\n## ", 1)]  # up to the next change
    assert r"- **policy-lag (ai-training)**: the help page (linkedin-genai-faq) said it on 2024-08-14;" in section
    assert "36 days later" in section
    assert r"- **policy-lag (ai-third-party)**: the help page (linkedin-genai-faq)" in section
    assert out.count("**policy-lag") == 2  # on that change only
    assert out.count("**policy-silent (opt-out-scope)**: the help page (linkedin-genai-faq) has said it since 2024-08-14") == 1


def test_a_service_without_help_pages_shows_no_lag(workdir: Path) -> None:
    from .conftest import corpus_file

    (workdir / "targets.yaml").write_text(
        "targets:\n  - id: linkedin-privacy\n    service: LinkedIn\n    document: privacy-policy\n"
        "    url: https://www.linkedin.com/legal/privacy-policy\n", encoding="utf-8",
    )
    code, _, err = in_process("import", "ota", str(corpus_file("LinkedIn", "Privacy Policy")), "--target", "linkedin-privacy")
    assert code == 0, err
    code, out, err = in_process("report", "--all", "--format", "json")
    assert code == 0, err
    changes = json.loads(out)["changes"]
    assert len(changes) > 10
    assert not [s for c in changes for s in c["signals"] if s["kind"] in ("policy-lag", "policy-silent")]
    september = next(c for c in changes if c["observed_at"].startswith("2024-09-19"))
    code, out, err = in_process("show", str(september["id"]))
    assert code == 0, err
    assert "policy-lag" not in out and "policy-silent" not in out
    code, out, err = in_process("report", "--all", "--format", "html", "-o", "report.html")
    assert code == 0, err
    assert 'class="signal policy-' not in (workdir / "report.html").read_text(encoding="utf-8")


def test_a_signal_is_escaped_in_the_html_report() -> None:
    """Signals pass through the autoescaped template: a captured word is never markup."""
    from monitor.render.html import render_report_html

    row = {
        "id": 3, "target_id": "t", "service": "S", "document": "faq", "url": "", "detected_at": "2024-09-19T00:00:00Z",
        "observed_at": "2024-09-19T00:00:00Z", "old_seq": 1, "new_seq": 2, "n_flags": 0, "categories": None, "signals": "[]",
        "summary": "", "html": "<p>x</p>", "html_version": None, "diff": '{"changes": []}',
    }
    hostile = {"kind": "policy-lag", "category": "ai-training", "days": 3.0, "message": "<script>alert(1)</script>",
               "other": {"target": "h\"><b>", "document": "faq", "date": "2024-09-16"}}
    html = render_report_html([row], signals={3: [hostile]})
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-other-target="h&#34;&gt;&lt;b&gt;"' in html
