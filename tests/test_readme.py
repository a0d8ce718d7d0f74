"""The README's promises: every `$ monitor ...` command in it runs as written, and every
command of the tool has an example there."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from .conftest import CORPUS, ROOT

pytestmark = pytest.mark.slow
README = ROOT / "README.md"
SHARED = CORPUS.parent.parent


def console_commands() -> list[str]:
    """Lines starting with `$ ` in ```console blocks, in order."""
    commands, inside = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```console"
            continue
        if inside and line.startswith("$ "):
            commands.append(line[2:].strip())
    return commands


def test_every_command_of_the_tool_has_an_example_in_the_readme() -> None:
    from monitor.cli import cli, load_commands

    load_commands()
    text = README.read_text(encoding="utf-8")
    names = []
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", None)
        names += [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
    assert len(names) >= 17  # check, run, status, report, history, show, diff, verify, ... alerts and import subcommands
    assert [name for name in names if f"monitor {name}" not in text] == []


@pytest.mark.timeout(900)  # the demo (28 versions, each fetched and screenshotted by Chromium) and ~40 commands
def test_readme_commands_run_as_written(tmp_path: Path) -> None:
    if not SHARED.exists():
        pytest.skip("the shared corpus is needed for the README's import and diff examples")
    (tmp_path / "old.html").write_text("<h1>Privacy</h1><p>We do not use your data to train AI models.</p>")
    (tmp_path / "new.html").write_text("<h1>Privacy</h1><p>We may use your data to train AI models.</p>")
    env = {**os.environ, "NO_COLOR": "1", "MONITOR_CONFIG": str(tmp_path / "demo" / "targets.yaml")}
    cwd = tmp_path
    ran = []
    for line in console_commands():
        words = shlex.split(line.replace("../shared/", f"{SHARED}/"), comments=True)
        if words[0] == "cd":
            cwd = (cwd / words[1]).resolve()
            continue
        assert words[0] == "monitor", line
        argv = [sys.executable, "-m", "monitor", *words[1:]]
        if words[1] == "run":
            code, out, err = _run_daemon_briefly(argv, cwd, env)
        else:
            proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        ran.append((line, code))
        assert "Traceback" not in err, f"{line}\n{err}"
        assert code in (0, 1), f"{line} exited {code}\n{out[-2000:]}\n{err[-2000:]}"
        if code == 1:  # a failure the README expects (the demo's servers are gone): one clear line
            assert err.strip() or out.strip(), line
        if words[1] == "demo":
            assert "⚑ ai-training (high, added): “develop and train artificial intelligence (AI) models”" in out
        if words[1:3] == ["show", "14"] and len(words) == 3:
            assert "ai-training" in out and "2024-09-18" in out
    assert len(ran) >= 30


def _run_daemon_briefly(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Start the daemon, wait (generous deadline) until it logs that it started, then stop it."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    lines: list[str] = []
    started = threading.Event()

    def read_stderr() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if "daemon-start" in line:
                started.set()
        started.set()  # the stream closed: the daemon exited

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    started.wait(timeout=120)
    proc.send_signal(signal.SIGTERM)
    out = proc.stdout.read() if proc.stdout is not None else ""
    proc.wait(timeout=60)
    reader.join(timeout=30)
    err = "".join(lines)
    assert re.search(r"daemon-start", err), err
    return proc.returncode, out, err
