"""Finding (and if asked, installing) a Chromium that Playwright can drive.

Search order, as the set-up promises: a browser Playwright already has, a system
Chromium/Chrome, `playwright install chromium`, and on Debian/Ubuntu as root
`apt-get install chromium`. `MONITOR_BROWSER=/path/to/chrome` short-cuts the search.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BrowserError

SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

# Flags every launch needs on this kind of machine: no sandbox as root, and nothing that
# reaches out to Google at start (the network is closed and Chromium would keep retrying).
BASE_ARGS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
)


def launch_args() -> list[str]:
    args = list(BASE_ARGS)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


@dataclass(frozen=True)
class BrowserInfo:
    """Where the browser is. `executable` None means Playwright's own bundled build."""

    executable: str | None
    how: str  # "env", "playwright", "system", "playwright-install", "apt-get"
    path: str

    def describe(self) -> str:
        labels = {
            "env": "from MONITOR_BROWSER",
            "playwright": "Playwright's own Chromium",
            "system": "system browser",
            "playwright-install": "installed by `playwright install chromium`",
            "apt-get": "installed by `apt-get install chromium`",
        }
        return f"{self.path} ({labels.get(self.how, self.how)})"


def playwright_bundled() -> str | None:
    """Path of Playwright's own Chromium if it is actually on disk."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - playwright is a hard dependency
        return None
    try:
        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # the driver failing to start means: not usable
        return None
    return path if path and Path(path).exists() else None


def system_browser() -> str | None:
    for name in SYSTEM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def find_browser(*, check_bundled: bool = True) -> BrowserInfo | None:
    """Look for a browser without installing anything."""
    env = os.environ.get("MONITOR_BROWSER")
    if env:
        if not Path(env).exists():
            raise BrowserError(f"MONITOR_BROWSER={env}: no such file; unset it or point it at a Chromium binary")
        return BrowserInfo(env, "env", env)
    if check_bundled:
        bundled = playwright_bundled()
        if bundled:
            return BrowserInfo(None, "playwright", bundled)
    system = system_browser()
    if system:
        return BrowserInfo(system, "system", system)
    return None


def browser_version(path: str) -> str | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _run(cmd: list[str], say: Callable[[str], None], timeout: int) -> bool:
    say(f"browser: running {' '.join(cmd)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        say(f"browser: {cmd[0]} failed: {exc}")
        return False
    if result.returncode != 0:
        say(f"browser: {' '.join(cmd[:3])} exited {result.returncode}: {_reason(result.stderr or result.stdout)}")
        return False
    return True


def _reason(output: str) -> str:
    """The line of a tool's output that says why it failed (its first error line)."""
    lines = [line.strip() for line in output.splitlines() if len(line.strip()) > 3]
    for line in lines:
        if "error" in line.lower() or "failed" in line.lower():
            return line[:200]
    return lines[-1][:200] if lines else "no output"


def _is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return any(word in text.lower() for word in ("debian", "ubuntu"))


def install_browser(say: Callable[[str], None] = print) -> BrowserInfo:
    """Find a browser, installing one if none is found. Says what it did at every step."""
    found = find_browser()
    if found:
        say(f"browser: found {found.describe()}")
        return found
    say("browser: Playwright has no Chromium of its own and none is on PATH")
    if _run([sys.executable, "-m", "playwright", "install", "chromium"], say, timeout=600):
        bundled = playwright_bundled()
        if bundled:
            info = BrowserInfo(None, "playwright-install", bundled)
            say(f"browser: using {info.describe()}")
            return info
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if _is_debian_like() and is_root and shutil.which("apt-get"):
        _run(["apt-get", "update", "-qq"], say, timeout=600)
        if _run(["apt-get", "install", "-y", "-qq", "chromium"], say, timeout=1200):
            system = system_browser()
            if system:
                info = BrowserInfo(system, "apt-get", system)
                say(f"browser: using {info.describe()}")
                return info
    elif not is_root:
        say("browser: not root, so apt-get was not tried")
    else:
        say("browser: not Debian/Ubuntu (or no apt-get), so apt-get was not tried")
    raise BrowserError(
        "no Chromium found or installable; install one (e.g. `apt-get install chromium`) "
        "or set MONITOR_BROWSER=/path/to/chrome"
    )
