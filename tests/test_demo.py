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
    # each version at its real recording time, each change by its id and version pair
    assert "2024-09-19  change #14 (v14→v15): 5 added, 3 removed, 35 modified; 2 flags" in result.out
    assert "change #14 (v14→v15), detected 2024-09-19" in result.out
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
    history = run_cli("--config", str(directory / "targets.yaml"), "history", "linkedin-privacy")
    assert "2024-09-19" in history.out and "2021-10-07" in history.out
    shown = run_cli("--config", str(directory / "targets.yaml"), "show", "14")
    assert "detected 2024-09-19" in shown.out
    again = run_cli("demo", "--dir", str(directory))
    assert again.code == 2 and "already holds a demo" in again.err
