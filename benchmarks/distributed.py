"""Distributed benchmark: one process vs a writer with 1 and 2 `monitor worker` processes.

Serves N local pages made from the real policy corpus; for each engine and each setting it
records a first version of every page, then times a pass where nothing changed and one where
every page changed (a paragraph added: diffed, flagged, stored). Settings: `single` (one
process fetching and writing, as `make run`), `fleet+1` and `fleet+2` (this process is only
the writer, as the daemon with `distributed:`; real workers on a real redis-server).

Printed per setting: pages per second; the writer's CPU per check (this process only: the
ceiling of one writer is 1 / that); the task and result bytes per unchanged and per changed
check (what the monitor packs: task messages' arguments, results as popped); all Redis
traffic per check (Celery's envelopes, kombu's unacked copies, the host limiter, heartbeats
and idle polls included, from the server's own counters: input + output bytes); and that
traffic less what the same workers and writer move at rest for as long as the pass took.

Budgets: the writer's CPU per unchanged check at most 10 ms (at least 100 checks per second
for one writer) and under 1 KB of Redis traffic per unchanged check (less rest). The writer
sends up to max_pending (64) checks at once, as `monitor check` and the daemon do.

    python benchmarks/distributed.py [--pages 200] [--engines http,browser] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, Figure, PageServer, corpus_markdown_files, markdown_page, print_table

NAME = "distributed"
REST_SECONDS = 5.0
CHANGE = "<p>We may use your posts and messages to train our artificial intelligence models.</p>"


def make_pages(count: int) -> dict[str, bytes]:
    files = corpus_markdown_files()
    return {f"/policy/{i}": markdown_page(files[i % len(files)].read_text(encoding="utf-8"), f"Policy {i}") for i in range(count)}


def config_text(server: PageServer, paths: list[str], engine: str, concurrency: int) -> str:
    lines = ["defaults:", f"  engine: {engine}", f"  concurrency: {concurrency}", f"  host_concurrency: {4 * concurrency}",
             "  host_delay: 0s", "  confirm_delay: 0s", "  timeout: 30s", "targets:"]
    for i, path in enumerate(paths):
        lines += [f"  - id: p{i}", "    service: Bench", "    document: privacy-policy", f"    url: {server.url(path)}"]
    return "\n".join(lines) + "\n"


class Redis:
    def __init__(self, directory: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                      "--dir", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def traffic(self) -> int:
        stats = self.client().info("stats")
        return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_workers(redis: Redis, count: int, concurrency: int, directory: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        log = open(directory / f"w{i}.log", "ab")  # noqa: SIM115 - handed to the process
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "monitor", "worker", "--broker", redis.url, "--name", f"bench{i}", "--concurrency", str(concurrency)],
            stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
        ))
    client = redis.client()
    deadline = time.monotonic() + 60
    while sum(client.exists(f"monitor:worker:bench{i}") for i in range(count)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start; see their logs in " + str(directory))
        time.sleep(0.1)
    time.sleep(1.0)  # Celery's consumers up after the first heartbeat
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def one_setting(server: PageServer, paths: list[str], engine: str, concurrency: int, workers: int, tmp: Path) -> dict[str, float]:
    from monitor.check import CheckContext, run_pass
    from monitor.distributed import Fleet
    from monitor.fetch import Fetcher
    from monitor.flags import load_rules
    from monitor.store import Store
    from monitor.targets import DistributedConfig, parse_config

    originals = {p: server.pages[p] for p in paths}
    directory = tmp / f"{engine}-{workers}"
    directory.mkdir()
    config_path = directory / "targets.yaml"
    config_path.write_text(config_text(server, paths, engine, concurrency))
    config = parse_config(config_path.read_text(), config_path)
    store = Store.open(config)
    store.sync_targets(config.targets)
    redis = procs = fleet = None
    counted = {"sent": 0, "received": 0}
    figures: dict[str, float] = {}
    elapsed_by_kind: dict[str, float] = {}
    try:
        capturer = None
        if workers:
            redis = Redis(directory)
            procs = start_workers(redis, workers, concurrency, directory)
            settings = DistributedConfig(broker=redis.url)
            fleet = await CountingFleet(settings, config.defaults, counted).start()
            await fleet.wait_for_workers(30)
            capturer = fleet.capture
            from dataclasses import replace

            # checks in flight as `monitor check` and the daemon send them: up to max_pending
            config = replace(config, defaults=replace(config.defaults, concurrency=settings.max_pending))
        async with Fetcher(config.defaults) as fetcher:
            ctx = CheckContext(config, store, fetcher, rules=load_rules(), capturer=capturer)
            first = await run_pass(ctx, list(config.targets))
            assert first.counts["first-version"] == len(paths), first.text()
            for kind in ("unchanged", "changed"):
                if kind == "changed":
                    for p in paths:
                        server.pages[p] = originals[p].replace(b"</main>", CHANGE.encode() + b"</main>")
                counted.update(sent=0, received=0)
                traffic0 = redis.traffic() if redis else 0
                cpu0, t0 = time.process_time(), time.perf_counter()
                summary = await run_pass(ctx, list(config.targets))
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
                expected = "unchanged" if kind == "unchanged" else "new-version"
                assert summary.counts[expected] == len(paths), summary.text()
                figures[f"{kind} pages/s"] = len(paths) / elapsed
                figures[f"{kind} writer CPU ms/check"] = 1000 * cpu / len(paths)
                if redis:
                    figures[f"{kind} task+result bytes/check"] = (counted["sent"] + counted["received"]) / len(paths)
                    figures[f"{kind} Redis traffic bytes/check"] = (redis.traffic() - traffic0) / len(paths)
                    elapsed_by_kind[kind] = elapsed
            if redis:  # the same workers and writer at rest (heartbeats, idle polls): bytes per second
                rest0 = redis.traffic()
                await asyncio.sleep(REST_SECONDS)
                rate = (redis.traffic() - rest0) / REST_SECONDS
                for kind, elapsed in elapsed_by_kind.items():
                    total = figures[f"{kind} Redis traffic bytes/check"] * len(paths)
                    figures[f"{kind} Redis traffic less rest bytes/check"] = (total - rate * elapsed) / len(paths)
    finally:
        for p, body in originals.items():
            server.pages[p] = body
        if fleet is not None:
            await fleet.close()
        if procs:
            stop_workers(procs)
        if redis is not None:
            redis.close()
        store.close()
    return figures


def counting_fleet() -> type:
    from monitor.distributed import Fleet, pack

    class Counting(Fleet):
        """Counts what the monitor puts through Redis: task arguments (packed, per message)
        and results (packed, as popped from the reply list)."""

        def __init__(self, settings: Any, defaults: Any, counted: dict[str, int]):
            super().__init__(settings, defaults)
            self.counted = counted

        async def start(self) -> Any:
            await super().start()
            blpop, lpop = self._redis.blpop, self._redis.lpop

            def counting_blpop(*args: Any, **kwargs: Any) -> Any:
                got = blpop(*args, **kwargs)
                self.counted["received"] += len(got[1]) if got else 0
                return got

            def counting_lpop(*args: Any, **kwargs: Any) -> Any:
                got = lpop(*args, **kwargs)
                self.counted["received"] += len(got) if got else 0
                return got

            self._redis.blpop, self._redis.lpop = counting_blpop, counting_lpop
            return self

        def _send(self, ids: list[str]) -> None:
            self.counted["sent"] += len(pack(self.message(ids)))
            super()._send(ids)

    return Counting


CountingFleet: Any = None


def run(pages: int, engines: tuple[str, ...], concurrency: int) -> list[Figure]:
    global CountingFleet
    CountingFleet = counting_fleet()
    server = PageServer(make_pages(pages))
    paths = sorted(server.pages)
    figures: list[Figure] = []
    worst_writer = worst_bytes = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for engine in engines:
                for workers, label in ((0, "single"), (1, "fleet+1"), (2, "fleet+2")):
                    measured = asyncio.run(one_setting(server, paths, engine, concurrency, workers, Path(tmp)))
                    # as each setting ends, so that a run cut short keeps what it measured
                    print(f"{engine} {label}: " + ", ".join(f"{k} {v:,.1f}" for k, v in measured.items()), file=sys.stderr, flush=True)
                    for name, value in measured.items():
                        unit = "pages/s" if "pages/s" in name else "ms" if "ms" in name else "bytes"
                        figures.append(Figure(NAME, f"{engine} {label} {name.replace(' pages/s', '').replace(' ms/check', '/check').replace(' bytes/check', '/check')}", value, unit))
                    if workers:
                        worst_writer = max(worst_writer, measured["unchanged writer CPU ms/check"])
                        worst_bytes = max(worst_bytes, measured["unchanged Redis traffic less rest bytes/check"])
    finally:
        server.close()
    figures.append(Figure.check(NAME, "writer CPU per unchanged check (worst fleet)", worst_writer, "ms", "<=", 10))
    figures.append(Figure.check(NAME, "Redis traffic per unchanged check, less rest (worst)", worst_bytes, "bytes", "<=", 1024))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--engines", default="http,browser")
    parser.add_argument("--concurrency", type=int, default=4, help="fetches at once: the single process, and each worker")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    figures = run(args.pages, tuple(args.engines.split(",")), args.concurrency)
    print_table(figures)
    raise SystemExit(0 if all(f.met is not False for f in figures) else 1)


if __name__ == "__main__":
    main()
