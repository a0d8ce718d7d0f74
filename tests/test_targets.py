"""targets.yaml: loading, defaults, and the documented error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.targets import field_reference, load_config, parse_duration, parse_schedule

from .conftest import ROOT, in_process, run_cli

GOOD = """\
defaults:
  schedule: 6h
  engine: auto
  timeout: 20s
storage:
  db: data/monitor.db
targets:
  - id: linkedin-privacy
    service: LinkedIn
    document: privacy-policy
    url: https://www.linkedin.com/legal/privacy-policy
    select: main
    tags: [ai]
  - id: example-terms
    service: Example
    document: terms
    urls: [https://example.com/terms, https://example.com/terms/ai]
    schedule: "0 6 * * *"
    engine: browser
    enabled: false
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [str(p) for p in info.value.problems]


def test_good_config_resolves_defaults_and_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    first, second = config.targets
    assert first.schedule.interval == 6 * 3600
    assert first.engine == "auto" and first.timeout == 20.0
    assert first.select == ("main",) and first.tags == ("ai",)
    assert second.urls == ("https://example.com/terms", "https://example.com/terms/ai")
    assert second.schedule.cron == "0 6 * * *" and second.engine == "browser"
    assert [t.id for t in config.enabled_targets] == ["linkedin-privacy"]
    assert config.db_path == (tmp_path / "data" / "monitor.db").resolve()
    assert config.snapshots_dir == (tmp_path / "snapshots").resolve()
    assert first.title == "LinkedIn · Privacy Policy"


def test_every_problem_is_reported_at_once_with_line_and_fix(tmp_path: Path) -> None:
    text = """\
defaults:
  schedul: 6h
targets:
  - id: Bad Id
    service: X
    document: privacy
    url: ftp://example.com/x
  - id: dup
    service: A
    document: terms
    url: https://a.example/terms
    schedule: every day
  - id: dup
    service: B
    document: terms
    url: https://b.example/terms
    select: "div[["
"""
    found = problems(tmp_path, text)
    joined = "\n".join(found)
    assert any(":2: defaults.schedul: unknown field; did you mean 'schedule'?" in p for p in found), joined
    assert any(":4: targets[Bad Id].id:" in p and "lower-case" in p for p in found), joined
    assert any(":6: " in p and "document" in p and "did you mean 'privacy-policy'?" in p for p in found), joined
    assert any(":7: " in p and "not an http(s) URL" in p for p in found), joined
    assert any(":12: " in p and "'every day' is not a schedule" in p and "30s, 15m, 6h, 1d" in p for p in found), joined
    assert any(":13: targets[dup].id: duplicate id (first used on line 8)" in p for p in found), joined
    assert any(":17: " in p and "not a valid CSS selector" in p for p in found), joined
    assert len(found) == 7, joined


def test_unknown_target_key_and_top_level_section(tmp_path: Path) -> None:
    found = problems(tmp_path, "target:\n  - id: a\n")
    assert any("target: unknown section; did you mean 'targets'?" in p for p in found)
    found = problems(
        tmp_path,
        "targets:\n  - id: a\n    service: A\n    document: terms\n    url: https://a.example/\n    selct: main\n",
    )
    assert found == [f"{tmp_path / 'targets.yaml'}:6: targets[a].selct: unknown field; did you mean 'select'?"]


def test_missing_fields_url_and_urls(tmp_path: Path) -> None:
    found = problems(tmp_path, "targets:\n  - id: a\n    service: A\n    document: terms\n")
    assert any("missing url (or urls:" in p for p in found)
    found = problems(
        tmp_path,
        "targets:\n  - id: a\n    document: terms\n    url: https://a.example/\n    urls: [https://b.example/]\n",
    )
    assert any("set either url or urls, not both" in p for p in found)
    assert any("missing required field 'service'" in p for p in found)


def test_bad_cron_and_yaml_and_missing_file(tmp_path: Path) -> None:
    found = problems(tmp_path, "targets:\n  - id: a\n    service: A\n    document: terms\n    url: https://a.example/\n    schedule: '99 * * * *'\n")
    assert any("is not a valid cron string" in p for p in found)
    found = problems(tmp_path, "targets:\n  - id: a\n   service: A\n")
    assert len(found) == 1 and "not valid YAML" in found[0] and ":3:" in found[0]
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "not found; pass --config PATH, set MONITOR_CONFIG" in str(info.value)


def test_alert_settings_are_validated(tmp_path: Path) -> None:
    text = GOOD + "alerts:\n  smtp:\n    host: mail.example.org\n    username: me\n  to: [not-an-email]\n  mode: weekly\n"
    found = problems(tmp_path, text)
    assert any("alerts.to" in p and "not an email address" in p for p in found)
    assert any("alerts.mode" in p and "immediate, digest" in p for p in found)
    assert any("password_env" in p for p in found)
    assert any("alerts.from" in p for p in found)


def test_durations_and_schedules() -> None:
    assert parse_duration("30s") == 30 and parse_duration("15m") == 900 and parse_duration("1d") == 86400
    assert parse_duration(5) == 5.0
    assert parse_schedule("6h").interval == 21600
    assert parse_schedule("*/5 * * * *").approx_interval() == 300
    with pytest.raises(ValueError):
        parse_schedule("0s")


def test_validate_command_messages_and_exit_codes(tmp_path: Path) -> None:
    path = write(tmp_path, "targets:\n  - id: a\n    service: A\n    document: terms\n    url: https://a.example/\n    schedule: soon\n    engin: http\n")
    result = run_cli("--config", str(path), "validate")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 2, result.err
    assert all(line.startswith(f"error: {path}:") for line in lines)
    assert "Traceback" not in result.err
    path.write_text(GOOD)
    code, out, _ = in_process("validate", "--config", str(path))
    assert code == 0 and "valid (2 targets, 1 enabled)" in out


def test_config_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, GOOD)
    monkeypatch.setenv("MONITOR_CONFIG", str(path))
    code, out, _ = in_process("validate")
    assert code == 0 and str(path.resolve()) in out


def test_field_reference_lists_every_target_field() -> None:
    text = field_reference()
    for name in ("id", "service", "document", "url", "urls", "select", "remove", "wait_for", "engine", "schedule", "lang", "enabled", "tags"):
        assert f"  {name} " in text


def test_shipped_targets_file_is_valid_and_covers_the_platforms() -> None:
    config = load_config(ROOT / "targets.yaml")
    urls = {t.id: t.urls for t in config.targets}
    all_urls = " ".join(u for us in urls.values() for u in us)
    for needle in (
        "linkedin.com/legal/privacy-policy",
        "linkedin.com/legal/user-agreement",
        "linkedin.com/legal/privacy/eu",
        "a5538339",
        "a7152512",
    ):
        assert needle in all_urls, needle
    services = {t.service for t in config.targets if t.service != "LinkedIn"}
    with_both = {s for s in services if {"privacy-policy", "terms"} <= {t.document for t in config.targets if t.service == s}}
    assert len(with_both) >= 10, sorted(with_both)


def test_control_characters_in_header_bound_text_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("service: LinkedIn", 'service: "LinkedIn\\r\\nBcc: victim@example.com"'))
    result = run_cli("--config", str(path), "validate")
    assert result.code == 2 and "Traceback" not in result.err
    [line] = result.err.strip().splitlines()
    assert line.startswith(f"error: {path}:9: targets[linkedin-privacy].service: ") and "control character" in line
    for field, value in (("user_agent", '"bot\\x00"'), ("locale", '"en\\tUS"')):
        text = GOOD.replace("    tags: [ai]\n", f"    tags: [ai]\n    {field}: {value}\n")
        [problem] = problems(tmp_path, text)
        assert f"targets[linkedin-privacy].{field}: " in problem and "control character" in problem
    alerts = GOOD + 'alerts:\n  from: m@example.org\n  subject_prefix: "[pm]\\nBcc: x@example.org"\n  webhook:\n    url: https://hook.example/\n    headers: {X-Token: "a\\r\\nX-Evil: 1"}\n'
    found = problems(tmp_path, alerts)
    assert any(p.startswith(f"{path}:") and "alerts.subject_prefix: " in p and "control character" in p for p in found), found
    assert any("alerts.webhook.headers: " in p and "control character" in p for p in found), found
