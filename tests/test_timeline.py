"""`monitor timeline`: a service's documents on one time axis, and policy-lag / policy-silent.

LinkedIn's real privacy-policy history (Open Terms Archive recordings in ../shared/corpus) is
imported beside dated help-page versions written for this test (tests/fixtures/service,
labelled synthetic there), through the real `monitor import ota` into a real SQLite store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monitor.service import Key, Said, signals

from .conftest import FIXTURES, corpus_file, in_process

HELP = FIXTURES / "service" / "linkedin-genai-faq"

CONFIG = """\
# LinkedIn as one service: the policy and a help page
defaults:
  engine: http
targets:
  - id: linkedin-privacy
    service: LinkedIn
    document: privacy-policy
    url: https://www.linkedin.com/legal/privacy-policy
  - id: linkedin-genai-faq
    service: LinkedIn
    document: faq
    url: https://www.linkedin.com/help/linkedin/answer/a5538339
"""


@pytest.fixture
def linkedin(workdir: Path) -> Path:
    (workdir / "targets.yaml").write_text(CONFIG, encoding="utf-8")
    policy = corpus_file("LinkedIn", "Privacy Policy")
    code, out, err = in_process("import", "ota", str(policy), "--target", "linkedin-privacy")
    assert code == 0, err
    code, out, err = in_process("import", "ota", str(HELP), "--target", "linkedin-genai-faq")
    assert code == 0, err
    assert "README.txt" not in out  # the label file is not a version
    return workdir


def test_timeline_shows_policy_and_help_page_with_policy_lag(linkedin: Path) -> None:
    code, out, err = in_process("timeline", "LinkedIn")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("LinkedIn: 2 document(s)")
    dated = [line[:10] for line in lines if re.match(r"\d{4}-\d\d-\d\d  ", line)]
    assert dated == sorted(dated)  # one time axis
    help_line = next(i for i, line in enumerate(lines) if line.startswith("2024-08-14  linkedin-genai-faq  v2"))
    policy_line = next(i for i, line in enumerate(lines) if line.startswith("2024-09-19  linkedin-privacy"))
    assert help_line < policy_line
    assert "⚑ ai-training" in lines[help_line + 1]
    # the lag is reported on the later change, the privacy policy's
    after_policy = "\n".join(lines[policy_line:policy_line + 8])
    assert (
        "! policy-lag: the help page (linkedin-genai-faq) said it on 2024-08-14; the privacy policy (linkedin-privacy) "
        "said it on 2024-09-19 (stated date 2024-09-18), 36 days later: it may use your data to train AI"
    ) in after_policy
    # the opt-out limits of the help page: no policy version says them
    assert "! policy-silent (opt-out-scope): the help page (linkedin-genai-faq) has said it since 2024-08-14" in out


def test_timeline_json_names_the_change_and_both_sides(linkedin: Path) -> None:
    code, out, err = in_process("timeline", "LinkedIn", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [d["target"] for d in data["documents"]] == ["linkedin-privacy", "linkedin-genai-faq"]
    assert data["documents"][0]["versions"] == 25 and data["documents"][1]["versions"] == 2
    lags = {s["category"]: s for s in data["signals"] if s["kind"] == "policy-lag"}
    assert set(lags) == {"ai-training", "ai-third-party"}
    training = lags["ai-training"]
    assert training["first"]["target"] == "linkedin-genai-faq" and training["first"]["observed_at"].startswith("2024-08-14")
    assert training["later"]["target"] == "linkedin-privacy" and training["later"]["effective_date"] == "2024-09-18"
    assert training["days"] == pytest.approx(36, abs=1)
    event = next(e for e in data["events"] if e["change"] and e["change"]["id"] == training["change_id"])
    assert event["target"] == "linkedin-privacy" and event["observed_at"].startswith("2024-09-19")
    assert {s["kind"] for s in event["signals"]} == {"policy-lag"}
    assert any(f["category"] == "ai-training" for f in event["change"]["flags"])
    silent = [s for s in data["signals"] if s["kind"] == "policy-silent"]
    assert [s["category"] for s in silent] == ["opt-out-scope"]
    assert silent[0]["first"]["target"] == "linkedin-genai-faq"

    # a threshold longer than the lag: no policy-lag
    code, out, err = in_process("timeline", "LinkedIn", "--format", "json", "--lag-threshold", "60d")
    assert code == 0, err
    assert not [s for s in json.loads(out)["signals"] if s["kind"] == "policy-lag"]


def test_timeline_html_is_one_escaped_page(linkedin: Path) -> None:
    code, _, err = in_process("timeline", "LinkedIn", "--format", "html", "-o", "timeline.html")
    assert code == 0, err
    html = (linkedin / "timeline.html").read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "<script" not in html
    assert html.count('class="signal policy-lag"') >= 4  # in the signal list and on the change
    assert "linkedin-genai-faq-v2" in html and "36 days later" in html


def test_timeline_bad_input_is_one_line(linkedin: Path) -> None:
    code, _, err = in_process("timeline", "Linkdin")
    assert code == 2 and "known services: LinkedIn" in err and "Traceback" not in err
    code, _, err = in_process("timeline", "LinkedIn", "--lag-threshold", "soon")
    assert code == 2 and err.startswith("error: --lag-threshold:")


def _said(side: str, document: str, day: str, target: str, change_id: int | None = 7) -> Said:
    key: Key = ("ai-training", "does", ())
    return Said(key, target, document, side, f"{day}T00:00:00Z", 1, None, change_id, "may use your data to train AI", "train AI")


def test_policy_first_then_help_page_is_a_lag_the_other_way_round() -> None:
    policy = _said("policy", "privacy-policy", "2024-01-01", "p")
    help_page = _said("help", "faq", "2024-03-01", "h")
    targets = [{"id": "p", "document": "privacy-policy"}, {"id": "h", "document": "faq"}]
    found = signals({policy.key: [policy, help_page]}, {}, targets, 86400)
    assert [s.kind for s in found] == ["policy-lag"]
    assert found[0].message.startswith("the privacy policy (p) said it on 2024-01-01; the help page (h) said it on 2024-03-01")
    # within the threshold: nothing
    close = _said("help", "faq", "2024-01-01", "h")
    assert signals({policy.key: [policy, close]}, {}, targets, 86400) == []


def test_the_html_report_puts_a_services_documents_on_one_axis(linkedin: Path) -> None:
    code, _, err = in_process("report", "--all", "--format", "html", "-o", "report.html")
    assert code == 0, err
    html = (linkedin / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="timelines">'):]
    assert section.count('<h3 class="service">LinkedIn</h3>') == 1
    blocks = {m.group(1): m.group(2) for m in re.finditer(r'<div class="muted">([\w-]+): \d+ versions?</div>(.*?)</svg>', section, re.S)}
    xs = {target: [float(x) for x in re.findall(r'<circle cx="([\d.]+)"', svg)] for target, svg in blocks.items()}
    # the policy spans 2021-10 to 2026-02; the help page's two versions (2024) sit inside that axis, not at its ends
    assert min(xs["linkedin-privacy"]) == 30.0 and max(xs["linkedin-privacy"]) == 970.0
    assert 400 < min(xs["linkedin-genai-faq"]) < max(xs["linkedin-genai-faq"]) < 700


def test_a_statement_in_the_later_documents_first_version_claims_no_lag() -> None:
    """A help page first captured in March may have said it since January: unknown, so silent."""
    policy = _said("policy", "privacy-policy", "2024-01-01", "p", change_id=None)
    help_page = _said("help", "faq", "2024-03-01", "h", change_id=None)
    targets = [{"id": "p", "document": "privacy-policy"}, {"id": "h", "document": "faq"}]
    assert signals({policy.key: [policy, help_page]}, {}, targets, 86400) == []
    changed = _said("help", "faq", "2024-03-01", "h", change_id=12)  # the help page's change added it
    [lag] = signals({policy.key: [policy, changed]}, {}, targets, 86400)
    assert lag.change_id == 12 and lag.days == 60
