"""Peers benchmark: the monitor against urlwatch 2.29 and a bare Playwright loop, side by side.

N local pages rendered from the real policy corpus are served by a threaded http.server
(ETag and Last-Modified on every page, 304 to a matching conditional request). Each tool
runs as a whole process, three passes in a row on a fresh state: `new` (nothing stored),
`unchanged` (the same pages again) and `changed` (every page has a new paragraph). Tools
take turns within each repetition (interleaved), and the ratios are of medians, with the
range over repetitions (worst-best ratio of paired runs).

- `monitor check`, engine http, concurrency 4, `confirm_delay: 0s`, `host_delay: 0s`,
  against urlwatch 2.29 with `filter: html2text` and `ignore_cached: true` (installed into
  a virtualenv in this benchmark's work folder: a benchmark dependency, not the package's).
  The budgets hold with conditional requests off on both sides (full GETs); the figures
  with the monitor's conditional requests on are printed as well.
- `monitor check`, engine browser, against a bare Playwright loop (one browser,
  `goto(wait_until="load")` + `content()`), at concurrency 1 and 4.
- One target, engine http, against urlwatch with one job: the whole process, start-up
  included, which is what a cron line or a script checking one page pays (budget: the
  monitor within 1.2 times urlwatch's time on the unchanged check).

Both tools run from compiled bytecode, as an installed package does: pip compiled urlwatch
when it installed it, and the monitor's checkout is compiled before the runs (with
PYTHONDONTWRITEBYTECODE set, an uncompiled checkout would parse every module on every run).

    python benchmarks/peers.py [--pages 200] [--reps 3] [--skip-browser] [--skip-http] [--skip-single]

The work folder is benchmarks/.work/peers (urlwatch's virtualenv is kept there between runs).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from common import ROOT, Figure, corpus_markdown_files, markdown_page, print_table

NAME = "peers"
WORK = ROOT / "benchmarks" / ".work" / "peers"
URLWATCH = "urlwatch==2.29"
PHASES = ("new", "unchanged", "changed")
PYTHON = sys.executable
MONITOR = [PYTHON, "-m", "monitor"]
MONITOR_ROOT = ROOT  # --monitor-root: another checkout of the monitor (an older commit, for before/after)


# ----------------------------------------------------------------------------- the pages


class Pages:
    """A threaded web server over a dict of pages that can all be changed at once."""

    def __init__(self, count: int):
        files = corpus_markdown_files()
        self.base = {f"/policy/{i}": files[i % len(files)].read_text(encoding="utf-8") for i in range(count)}
        self.pages: dict[str, tuple[bytes, str, str]] = {}
        self.lock = threading.Lock()
        self.counts = {"200": 0, "304": 0}
        self.set_version(0)
        pages = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # as real web servers do (nginx's tcp_nodelay): without it, the body's write waits
            # for the client's delayed ACK of the headers on a kept-alive connection (~40 ms)
            disable_nagle_algorithm = True

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                with pages.lock:
                    found = pages.pages.get(self.path.split("?")[0])
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, etag, modified = found
                if self.headers.get("If-None-Match") == etag or (
                    self.headers.get("If-None-Match") is None and self.headers.get("If-Modified-Since") == modified
                ):
                    with pages.lock:
                        pages.counts["304"] += 1
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", modified)
                    self.end_headers()
                    return
                with pages.lock:
                    pages.counts["200"] += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # http.server's backlog of 5 drops concurrent fetches
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set_version(self, version: int) -> None:
        """Version 0 is the corpus page; version 1 adds a paragraph to every page."""
        modified = formatdate(1_700_000_000 + version * 86400, usegmt=True)
        pages = {}
        for path, text in self.base.items():
            if version:
                text += f"\n\nWe may use the content you share to train artificial intelligence models (revision {version}).\n"
            body = markdown_page(text, f"Policy {path.rsplit('/', 1)[1]}")
            pages[path] = (body, f'"{hashlib.sha256(body).hexdigest()[:16]}"', modified)
        with self.lock:
            self.pages = pages

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.port}{p}" for p in self.base]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------- running a process


def timed(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one whole process."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty process must not block on it
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd[:4])}... exited {proc.returncode}:\n{err.read().decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def urlwatch_bin() -> Path:
    """urlwatch 2.29 (and html2text) in a virtualenv of the work folder, installed once."""
    venv = WORK / "urlwatch-venv"
    exe = venv / "bin" / "urlwatch"
    if not exe.exists():
        print(f"installing {URLWATCH} into {venv} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", URLWATCH, "html2text"], check=True)
    return exe


class Tool:
    name = ""

    def fresh(self, folder: Path) -> None:
        raise NotImplementedError

    def run(self, folder: Path) -> tuple[float, float]:
        raise NotImplementedError


class Urlwatch(Tool):
    name = "urlwatch"

    def __init__(self, urls: list[str], name: str = "urlwatch"):
        self.exe = urlwatch_bin()
        self.urls, self.name = urls, name

    def fresh(self, folder: Path) -> None:
        jobs = "---\n".join(f"name: p{i}\nurl: {u}\nfilter:\n  - html2text\nignore_cached: true\n" for i, u in enumerate(self.urls))
        (folder / "urls.yaml").write_text(jobs)

    def run(self, folder: Path) -> tuple[float, float]:
        env = {**os.environ, "HOME": str(folder)}
        cmd = [str(self.exe), "--urls", str(folder / "urls.yaml"), "--config", str(folder / "urlwatch.yaml"),
               "--cache", str(folder / "cache.db")]
        return timed(cmd, cwd=folder, env=env)


class Monitor(Tool):
    def __init__(self, urls: list[str], engine: str, concurrency: int, conditional: bool = False, name: str | None = None):
        self.urls, self.engine, self.concurrency, self.conditional = urls, engine, concurrency, conditional
        self.name = name or f"monitor {engine} c={concurrency}" + (" conditional" if conditional else "")

    def fresh(self, folder: Path) -> None:
        lines = ["defaults:", f"  engine: {self.engine}", f"  concurrency: {self.concurrency}",
                 f"  host_concurrency: {self.concurrency}", "  host_delay: 0s", "  confirm_delay: 0s", "  timeout: 30s",
                 *([f"  conditional: {'true' if self.conditional else 'false'}"] if MONITOR_ROOT == ROOT else []), "targets:"]
        for i, url in enumerate(self.urls):
            lines += [f"  - id: p{i}", "    service: Bench", "    document: privacy-policy", f"    url: {url}"]
        (folder / "targets.yaml").write_text("\n".join(lines) + "\n")

    def run(self, folder: Path) -> tuple[float, float]:
        env = {**os.environ, "PYTHONPATH": str(MONITOR_ROOT), "NO_COLOR": "1"}
        return timed([*MONITOR, "--config", str(folder / "targets.yaml"), "check"], cwd=folder, env=env)


BARE = '''
import asyncio, sys
from playwright.async_api import async_playwright
sys.path.insert(0, {root!r})
from monitor.browser import launch_args, system_browser

async def main(urls, concurrency):
    async with async_playwright() as pw:
        exe = system_browser()
        browser = await pw.chromium.launch(executable_path=exe, args=launch_args(), headless=True)
        context = await browser.new_context()
        queue = list(urls)
        async def worker():
            page = await context.new_page()
            while queue:
                url = queue.pop()
                await page.goto(url, wait_until="load")
                await page.content()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await browser.close()

urls = open(sys.argv[1]).read().split()
asyncio.run(main(urls, int(sys.argv[2])))
'''


class BarePlaywright(Tool):
    def __init__(self, urls: list[str], concurrency: int):
        self.urls, self.concurrency = urls, concurrency
        self.name = f"bare playwright c={concurrency}"

    def fresh(self, folder: Path) -> None:
        (folder / "urls.txt").write_text("\n".join(self.urls))
        (folder / "bare.py").write_text(BARE.format(root=str(ROOT)))

    def run(self, folder: Path) -> tuple[float, float]:
        return timed([PYTHON, str(folder / "bare.py"), str(folder / "urls.txt"), str(self.concurrency)], cwd=folder)


# ----------------------------------------------------------------------------- the comparison


def one_round(tool: Tool, pages: Pages) -> dict[str, tuple[float, float]]:
    """(wall, CPU) of each phase, on a fresh state."""
    out: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        folder = Path(tmp)
        pages.set_version(0)
        tool.fresh(folder)
        out["new"] = tool.run(folder)
        out["unchanged"] = tool.run(folder)
        pages.set_version(1)
        out["changed"] = tool.run(folder)
    pages.set_version(0)
    return out


def ratio_figures(label: str, ours: str, theirs: str, runs: dict[str, list[dict[str, tuple[float, float]]]], n: int,
                  budgets: dict[str, float], cpu_budget: dict[str, float]) -> list[Figure]:
    """pages/s of `ours` over `theirs` per phase (median, range over paired runs), and CPU per page."""
    figures = []
    for phase in PHASES:
        ratios = [t[phase][0] / o[phase][0] for o, t in zip(runs[ours], runs[theirs])]
        ours_pps = statistics.median(n / r[phase][0] for r in runs[ours])
        theirs_pps = statistics.median(n / r[phase][0] for r in runs[theirs])
        ratio = ours_pps / theirs_pps
        name = f"{label} {phase} pages/s ratio (range {min(ratios):.2f}-{max(ratios):.2f}; {ours_pps:.1f} vs {theirs_pps:.1f} pages/s)"
        if phase in budgets:
            figures.append(Figure.check(NAME, name, ratio, "x", ">=", budgets[phase]))
        else:
            figures.append(Figure(NAME, name, ratio, "x"))
        ours_cpu = statistics.median(r[phase][1] / n for r in runs[ours])
        theirs_cpu = statistics.median(r[phase][1] / n for r in runs[theirs])
        cpu_ratios = [o[phase][1] / t[phase][1] for o, t in zip(runs[ours], runs[theirs])]
        cname = (f"{label} {phase} CPU per page ratio (range {min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}; "
                 f"{ours_cpu * 1000:.1f} vs {theirs_cpu * 1000:.1f} ms)")
        if phase in cpu_budget:
            figures.append(Figure.check(NAME, cname, ours_cpu / theirs_cpu, "x", "<=", cpu_budget[phase]))
        else:
            figures.append(Figure(NAME, cname, ours_cpu / theirs_cpu, "x"))
    return figures


def compile_monitor() -> None:
    """Bytecode for the monitor's checkout, as pip writes it for an installed package."""
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(MONITOR_ROOT / "monitor")], check=True, stdout=subprocess.DEVNULL)


def run(pages_count: int = 200, reps: int = 3, http: bool = True, browser: bool = True, single: bool = True,
        say: Any = None) -> list[Figure]:
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    WORK.mkdir(parents=True, exist_ok=True)
    compile_monitor()
    pages = Pages(pages_count)
    urls = pages.urls()
    tools: list[Tool] = []
    if http:
        tools += [Urlwatch(urls), Monitor(urls, "http", 4), Monitor(urls, "http", 4, conditional=True)]
    if single:
        tools += [Urlwatch(urls[:1], name="urlwatch, one job"), Monitor(urls[:1], "http", 1, name="monitor http, one target")]
    if browser:
        tools += [BarePlaywright(urls, 1), Monitor(urls, "browser", 1), BarePlaywright(urls, 4), Monitor(urls, "browser", 4)]
    runs: dict[str, list[dict[str, tuple[float, float]]]] = {t.name: [] for t in tools}
    try:
        for rep in range(reps):
            for tool in tools:  # interleaved: every tool once per repetition
                result = one_round(tool, pages)
                runs[tool.name].append(result)
                say(f"  rep {rep + 1} {tool.name}: " + ", ".join(f"{p} {result[p][0]:.2f}s/{result[p][1]:.2f} CPU s" for p in PHASES))
    finally:
        pages.close()
    figures: list[Figure] = []
    if http:
        figures += ratio_figures("http vs urlwatch, conditional off:", "monitor http c=4", "urlwatch", runs, pages_count,
                                 {"unchanged": 1.0, "new": 0.5, "changed": 0.5}, {"unchanged": 1.0})
        figures += ratio_figures("http vs urlwatch, conditional on:", "monitor http c=4 conditional", "urlwatch", runs, pages_count, {}, {})
    if browser:
        for c in (1, 4):
            figures += ratio_figures(f"browser vs bare playwright c={c}:", f"monitor browser c={c}", f"bare playwright c={c}", runs,
                                     pages_count, {"unchanged": 0.9, "new": 0.8, "changed": 0.8}, {})
    if single:  # within 1.2x urlwatch's process time is a speed ratio of at least 1/1.2
        figures += ratio_figures("one target vs urlwatch one job:", "monitor http, one target", "urlwatch, one job", runs, 1,
                                 {"unchanged": 1 / 1.2}, {})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-single", action="store_true", help="skip the one-target whole-process comparison")
    parser.add_argument("--monitor-root", type=Path, default=ROOT, help="run the monitor from another checkout (before/after)")
    args = parser.parse_args()
    global MONITOR_ROOT
    MONITOR_ROOT = args.monitor_root.resolve()
    figures = run(args.pages, args.reps, http=not args.skip_http, browser=not args.skip_browser, single=not args.skip_single)
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
