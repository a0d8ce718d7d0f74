"""`monitor demo`: the real pipeline over LinkedIn's real history, offline."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_demo_replays_history_flags_september_2024_and_mails_it(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    result = run_cli("demo", "--dir", str(directory), "--versions", "17")
    assert result.code == 0, result.err
    assert "[17/17] recorded by OTA 2024-09-19: new version linkedin-privacy@" in result.out
    assert "⚑ ai-training (high, added): “develop and train artificial intelligence (AI) models”" in result.out
    assert "Now says it may share public content with Microsoft and affiliates for their AI" in result.out
    assert "right to object" not in result.out  # the objection sentence did not change (issue 11)
    report = (directory / "report.html").read_text()
    assert "develop and train artificial intelligence (AI) models" in report and "ai-training" in report
    mails = sorted((directory / "mail").glob("*.eml"))
    subjects = [email.message_from_bytes(m.read_bytes(), policy=policy.default)["Subject"] for m in mails]
    # one alert per substantive change; link-only and markup edits are cosmetic and alert nobody
    assert len(subjects) == 7
    assert subjects[-1] == "[privacy monitor] LinkedIn · Privacy Policy changed: AI training clause changed (2 flags)"
    # the demo leaves a working set-up behind: its commands run on it
    flagged = run_cli("--config", str(directory / "targets.yaml"), "report", "--all", "--flagged", "--category", "ai-training")
    assert flagged.code == 0 and "2024-07-31 → 2024-09-18" in flagged.out
    assert run_cli("--config", str(directory / "targets.yaml"), "verify").code == 0
    again = run_cli("demo", "--dir", str(directory))
    assert again.code == 2 and "already holds a demo" in again.err
