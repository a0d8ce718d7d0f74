"""Distributed fetching with the real parts: a real redis-server on a free port in a temp
dir, real `monitor worker` processes (Celery), local HTTP servers, real SQLite stores.

Under CI=true nothing here skips: a missing redis-server fails (the set-up installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import POLICY, Site, page, run_cli, wait_for, write_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- real Redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def start(self) -> None:
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=log, stderr=subprocess.STDOUT,
        )
        assert wait_for(self._answers, timeout=20), f"redis-server did not answer on port {self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        """A restart without persistence: whatever was queued is gone."""
        self.stop()
        self.start()


def redis_binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if found:
        return found
    message = "redis-server is not installed; `make setup` installs it (apt-get install -y redis-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " - under CI=true this test never skips")
    pytest.skip(message)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(redis_binary(), directory)
    server.start()
    yield server
    server.stop()


@dataclass
class RabbitServer:
    """A RabbitMQ node of its own (ports, name, data and logs in a temp dir)."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def env(self) -> dict[str, str]:
        d = self.directory
        return {**os.environ, "HOME": str(d), "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_NODENAME": f"monitor{self.port}@localhost", "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"), "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "plugins"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"), "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags")}

    def _answers(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
            return True
        except Exception:
            return False

    def start(self) -> None:
        for sub in ("mnesia", "log"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # the server script drops root for its own user, which must own the dirs
            subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.directory)], check=False)
        log = open(self.directory / "rabbitmq.out", "ab")  # noqa: SIM115 - handed to the process
        self.proc = subprocess.Popen([self.binary], env=self.env, cwd=str(self.directory), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        started = wait_for(lambda: self._answers() or self.proc.poll() is not None, timeout=120, interval=0.5) and self.proc.poll() is None
        assert started, f"rabbitmq-server did not answer on port {self.port}: " + (self.directory / "rabbitmq.out").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
        subprocess.run([ctl, "-n", f"monitor{self.port}@localhost", "stop"], env=self.env, capture_output=True, timeout=60, check=False)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None


def rabbitmq_binary() -> str:
    found = shutil.which("rabbitmq-server") or ("/usr/sbin/rabbitmq-server" if os.path.exists("/usr/sbin/rabbitmq-server") else None)
    if found:
        return found
    message = "rabbitmq-server is not installed; `make test` installs it (apt-get install -y rabbitmq-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " - under CI=true this test never skips")
    pytest.skip(message)


@pytest.fixture
def rabbitmq_server() -> Iterator[RabbitServer]:
    # not under tmp_path: as root the server runs as its own user, who cannot enter pytest's
    # private temp dirs
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="monitor-rabbitmq-"))
    server = RabbitServer(rabbitmq_binary(), directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# ----------------------------------------------------------------------------- real workers


class Workers:
    """`monitor worker` processes on the test's Redis, stopped at the end of the test."""

    def __init__(self, redis: RedisServer, directory: Path):
        self.redis = redis
        self.directory = directory
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.broker = redis.url  # or another broker (RabbitMQ), results staying in this Redis

    def start(self, name: str, *, concurrency: int = 2, visibility: str = "8s") -> subprocess.Popen[bytes]:
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - handed to the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "worker", "--broker", self.broker, "--results", self.redis.url, "--name", name, "--concurrency", str(concurrency),
             "--visibility-timeout", visibility, "--restore-interval", "1s", "--loglevel", "INFO"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=str(self.directory),
        )
        self.procs[name] = proc
        assert wait_for(lambda: self.redis.client().exists(f"monitor:worker:{name}") == 1, timeout=60), self.log(name)
        assert wait_for(lambda: "ready" in self.log(name), timeout=60), self.log(name)
        return proc

    def log(self, name: str) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def tasks(self, name: str) -> int:
        raw = self.redis.client().hget("monitor:workers-seen", name)
        return int(json.loads(raw)["tasks"]) if raw else 0

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    directory = tmp_path / "workers"
    directory.mkdir()
    fleet = Workers(redis_server, directory)
    yield fleet
    fleet.stop_all()


def policy(i: int, extra: str = "") -> str:
    return page(*POLICY, f"Section {i}: we keep records of page {i} for as long as the law requires.", extra)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def store_view(directory: Path) -> dict[str, Any]:
    """What two runs over the same pages must agree on (ids and times aside)."""
    db = directory / "monitor.db"
    return {
        "versions": rows(db, "select target_id, seq, text_sha256, text_bytes, clause_count, reverted_to from versions order by target_id, seq"),
        "changes": rows(db, "select target_id, old_seq, new_seq, substantive, n_changes, n_flags, categories, max_severity, summary from changes order by target_id, new_seq"),
        "alerts": rows(db, "select kind, channel, target_id from alerts order by target_id, kind, channel"),
        "fetches": rows(db, "select target_id, outcome, count(*) from fetches group by target_id, outcome order by target_id, outcome"),
    }


# ----------------------------------------------------------------------------- no Redis needed


def test_without_distributed_celery_is_never_imported(site: Site, tmp_path: Path) -> None:
    url = site.set("/p", policy(1))
    config = write_config(tmp_path, [{"id": "p", "service": "S", "document": "privacy-policy", "url": url}])
    code = (
        "import sys\nfrom monitor.cli import main\n"
        f"code = main(['--config', {str(config)!r}, 'check'])\n"
        "print('LOADED', sorted(m for m in ('celery', 'kombu', 'redis', 'monitor.distributed', 'monitor.worker') if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "first version recorded" in proc.stdout
    assert "LOADED []" in proc.stdout


def test_distributed_config_errors_are_one_line(tmp_path: Path) -> None:
    target = {"id": "p", "service": "S", "document": "privacy-policy", "url": "http://127.0.0.1:9/p"}
    config = write_config(tmp_path, [target])
    text = config.read_text()
    config.write_text(text + "distributed: {broker: 'http://localhost:6379'}\n")
    result = run_cli("--config", str(config), "validate")
    assert result.code == 2
    assert "distributed.broker: 'http://localhost:6379' is not a broker URL; write it like redis://" in result.err
    assert "Traceback" not in result.err
    config.write_text(text + "distributed: {broker: 'amqp://rabbit/'}\n")
    result = run_cli("--config", str(config), "validate")
    assert result.code == 2 and "distributed.results: the broker is not Redis; add results: redis://" in result.err
    config.write_text(text + "distributed: {brokr: 'redis://x:1/0'}\n")
    result = run_cli("--config", str(config), "validate")
    assert result.code == 2 and "distributed.brokr: unknown field; did you mean 'broker'?" in result.err
    config.write_text(text + "distributed: {broker: 'amqp://rabbit/', results: 'redis://r:6379/1', max_pending: 5}\n")
    from monitor.targets import load_config

    loaded = load_config(config).distributed
    assert loaded is not None and (loaded.broker, loaded.results_url, loaded.max_pending) == ("amqp://rabbit/", "redis://r:6379/1", 5)
    config.write_text(text)
    result = run_cli("--config", str(config), "check", "--broker", "localhost:6379")
    assert result.code == 2 and "--broker" in result.err and "is not a broker URL" in result.err and "Traceback" not in result.err


def test_wire_format_keeps_the_capture_and_an_unchanged_result_is_small(site: Site) -> None:
    import asyncio

    from monitor.distributed import decode_capture, decode_task, encode_capture, encode_task
    from monitor.fetch import Fetcher, Prior, capture_with
    from monitor.targets import DEFAULTS_FIELDS, Defaults, Target, default_value

    defaults = Defaults(**{spec.name: default_value(spec) for spec in DEFAULTS_FIELDS})
    target = Target(id="p", service="S", document="privacy-policy", urls=(site.set("/p", policy(1)),), engine="http", select=("main",))

    async def capture(prior: Prior) -> Any:
        async with Fetcher(defaults) as fetcher:
            return await capture_with(fetcher, target, prior)

    first = asyncio.run(capture(Prior()))
    payload = encode_task(target, Prior(), defaults)
    t2, p2, politeness, deadline = decode_task(json.loads(json.dumps(payload)))
    assert (t2.id, t2.urls, t2.engine, t2.select) == (target.id, target.urls, "http", ("main",)) and p2 == Prior() and deadline > target.timeout
    back = decode_capture(json.loads(json.dumps(encode_capture(first, "w1"))))
    assert back.document is not None and first.document is not None
    assert back.document.clauses == first.document.clauses and back.document.to_markdown() == first.document.to_markdown()
    assert [(r.url, r.data, r.ext) for r in back.raws] == [(r.url, r.data, r.ext) for r in first.raws]
    assert back.record == first.record
    # the same bytes again: no document, no pages, a few hundred bytes each way
    from monitor.extract import sha256_text

    known = (first.record.extract_key, sha256_text(first.document.to_markdown()))
    prior = Prior(previous_length=len(first.document.to_markdown()), known=known, known_raw=first.record.raw_sha256)
    again = asyncio.run(capture(prior))
    wire = json.dumps(encode_capture(again, "w1", prior))
    assert again.document is None and "z" not in json.loads(wire)
    assert len(wire) + len(json.dumps(encode_task(target, prior, defaults))) < 1024, wire
    back = decode_capture(json.loads(wire), prior)
    assert back.same_as == known[1] and back.record == again.record


# ----------------------------------------------------------------------------- with Redis and workers


def test_check_without_a_live_worker_fails_clearly(redis_server: RedisServer, site: Site, tmp_path: Path) -> None:
    url = site.set("/p", policy(1))
    config = write_config(tmp_path, [{"id": "p", "service": "S", "document": "privacy-policy", "url": url}])
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}', wait_for_workers: 2s}}\n")
    started = time.monotonic()
    result = run_cli("--config", str(config), "check", timeout=60)
    assert result.code == 1
    assert f"error: no worker alive on {redis_server.url} (waited 2s); start one with `monitor worker --broker {redis_server.url}`" in result.err
    assert time.monotonic() - started < 20
    assert "Traceback" not in result.err
    assert site.hits["/p"] == 0


def test_two_workers_record_what_one_process_records(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    n = 10
    for i in range(n):
        site.set(f"/p{i}", policy(i), delay=0.1)
    targets = [{"id": f"p{i}", "service": "S", "document": "privacy-policy", "url": site.url(f"/p{i}")} for i in range(n)]
    alerts = {"webhook": {"url": f"http://127.0.0.1:{free_port()}/hook"}}  # queued, never delivered (--no-alerts)
    single, fleet = tmp_path / "single", tmp_path / "fleet"
    single.mkdir()
    fleet.mkdir()
    confirm = {"confirm_delay": "0.2s"}  # a change is confirmed by a second fetch: on the fleet, a second task
    write_config(single, targets, alerts=alerts, defaults=confirm)
    config = write_config(fleet, targets, alerts=alerts, defaults=confirm)
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}', max_pending: 6}}\n")
    workers.start("w1")
    workers.start("w2")

    def both_passes() -> None:
        for directory in (single, fleet):
            result = run_cli("--config", str(directory / "targets.yaml"), "check", "--no-alerts", timeout=120)
            assert result.code == 0, result.err

    both_passes()  # first versions
    for i in range(0, n, 2):  # half the pages change: a new AI-training clause
        site.set(f"/p{i}", policy(i, "<p>We use your posts and messages to train our artificial intelligence models.</p>"), delay=0.1)
    both_passes()
    both_passes()  # unchanged
    one, many = store_view(single), store_view(fleet)
    assert len(one["versions"]) == n + n // 2 and len(one["changes"]) == n // 2 and one["alerts"]
    assert ("p0", "confirmed", 1) in one["fetches"]
    assert many == one
    assert wait_for(lambda: workers.tasks("w1") + workers.tasks("w2") == 3 * n + n // 2, timeout=15)
    assert workers.tasks("w1") > 0 and workers.tasks("w2") > 0
    status = run_cli("--config", str(config), "status")
    assert status.code == 0
    assert "workers: 2 alive on" in status.out and ": 0 waiting (daemon sends at most 6 at once)" in status.out
    assert "w1  alive" in status.out and "w2  alive" in status.out
    assert "visibility timeout 8s cuts tasks before the longest deadline" in status.out  # the test's short bound, reported


def _connected_worker(workers: Workers, port: int) -> str | None:
    import psutil

    for name, proc in workers.procs.items():
        try:
            if any(c.raddr and c.raddr.port == port for c in psutil.Process(proc.pid).net_connections(kind="tcp")):
                return name
        except psutil.Error:
            continue
    return None


def _kill_the_worker_fetching(workers: Workers, port: int) -> str:
    """kill -9 the worker connected to `port` (the one holding the hung fetch); its name."""
    victim: str | None = None

    def found() -> bool:
        nonlocal victim
        victim = _connected_worker(workers, port)
        return victim is not None

    assert wait_for(found, timeout=20)
    assert victim is not None
    workers.procs[victim].send_signal(signal.SIGKILL)
    workers.procs[victim].wait(10)
    return victim


def test_a_worker_killed_mid_fetch_leaves_the_check_to_the_other(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    release = threading.Event()
    requests: list[float] = []

    def body() -> str:
        requests.append(time.monotonic())
        if len(requests) == 1:
            release.wait(60)  # the first fetch hangs until its worker is killed
        return policy(1)

    url = site.set("/slow", body)
    config = write_config(tmp_path, [{"id": "slow", "service": "S", "document": "privacy-policy", "url": url}], defaults={"timeout": "6s", "retries": 0})
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}'}}\n")
    workers.start("w1", concurrency=1, visibility="12s")
    workers.start("w2", concurrency=1, visibility="12s")
    check = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(requests) == 1, timeout=60)
        victim = _kill_the_worker_fetching(workers, site.port)
        out, err = check.communicate(timeout=90)
    finally:
        release.set()
        if check.poll() is None:
            check.kill()
    assert check.returncode == 0, err
    assert "slow: first version recorded" in out
    survivor = "w2" if victim == "w1" else "w1"
    assert len(requests) == 2
    db = tmp_path / "monitor.db"
    assert rows(db, "select count(*) from versions") == [(1,)]
    assert rows(db, "select outcome from fetches") == [("new-version",)]
    assert wait_for(lambda: workers.tasks(survivor) == 1, timeout=10)
    assert wait_for(lambda: redis_server.client().exists(f"monitor:worker:{victim}") == 0, timeout=20)
    status = run_cli("--config", str(config), "status")
    assert f"{victim}  GONE" in status.out and f"{survivor}  alive" in status.out and "workers: 1 alive" in status.out


def test_a_pass_survives_a_redis_restart(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    n = 8
    for i in range(n):
        site.set(f"/p{i}", policy(i), delay=1.0)
    targets = [{"id": f"p{i}", "service": "S", "document": "privacy-policy", "url": site.url(f"/p{i}")} for i in range(n)]
    config = write_config(tmp_path, targets)
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}'}}\n")
    workers.start("w1", concurrency=2)
    workers.start("w2", concurrency=2)
    check = subprocess.Popen([sys.executable, "-m", "monitor", "-v", "--config", str(config), "check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: sum(site.hits.values()) >= 2, timeout=60)
        redis_server.restart()
        out, err = check.communicate(timeout=120)
    finally:
        if check.poll() is None:
            check.kill()
    assert check.returncode == 0, err
    assert "resend" in err and "the Redis server restarted" in err  # the queued checks were lost with it, and sent again
    assert f"checked {n}, new version {n}, unchanged 0, failed 0" in out
    db = tmp_path / "monitor.db"
    assert rows(db, "select count(distinct target_id), count(*) from versions") == [(n, n)]
    assert rows(db, "select count(*) from fetches") == [(n,)]


def test_host_delay_holds_across_two_workers(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    arrivals: list[float] = []
    lock = threading.Lock()

    def body(i: int) -> Any:
        def make() -> str:
            with lock:
                arrivals.append(time.monotonic())  # server side, when the request arrived
            return policy(i)

        return make

    n = 8
    targets = [{"id": f"p{i}", "service": "S", "document": "privacy-policy", "url": site.set(f"/p{i}", body(i))} for i in range(n)]
    # One request at a time per host, and 0.4 s after the last one finished: the rule holds
    # at the server whatever a worker's own lag between the gate and the request. Without
    # the one limiter in Redis, the two workers would each fetch at once (gaps near 0).
    config = write_config(tmp_path, targets, defaults={"host_delay": "0.4s", "host_concurrency": 1})
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}'}}\n")
    workers.start("w1", concurrency=4, visibility="60s")  # waits at the gate count within a task's bound
    workers.start("w2", concurrency=4, visibility="60s")
    result = run_cli("--config", str(config), "check", timeout=120)
    assert result.code == 0, result.err
    assert f"checked {n}, new version {n}" in result.out, result.out
    assert len(arrivals) == n
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 0.35, gaps
    assert wait_for(lambda: workers.tasks("w1") + workers.tasks("w2") == n, timeout=15)
    assert workers.tasks("w1") > 0 and workers.tasks("w2") > 0  # both fetched: the pause held across them


def test_a_result_twice_is_taken_once_and_another_version_is_never_diffed(redis_server: RedisServer, site: Site) -> None:
    import asyncio

    from monitor.distributed import Fleet, encode_capture, queue_depth
    from monitor.fetch import Fetcher, Prior, capture_with
    from monitor.targets import DEFAULTS_FIELDS, Defaults, DistributedConfig, Target, default_value

    defaults = Defaults(**{spec.name: default_value(spec) for spec in DEFAULTS_FIELDS})
    target = Target(id="p", service="S", document="privacy-policy", urls=(site.set("/p", policy(1)),), engine="http")
    settings = DistributedConfig(broker=redis_server.url)

    async def scenario() -> tuple[int, int, int, int | None]:
        async with Fetcher(defaults) as fetcher:
            real = await capture_with(fetcher, target, Prior())
        async with Fleet(settings, defaults) as fleet:
            waiting = asyncio.ensure_future(fleet.capture(target, Prior()))
            assert await asyncio.to_thread(wait_for, lambda: fleet.pending == 1, 10)
            await asyncio.sleep(0.3)  # sent
            task_id = next(iter(fleet._waiting))
            result = encode_capture(real, "w-test")
            skewed = {**result, "sig": "0.0.0-x0-d0"}
            fleet._take(task_id, {"status": "SUCCESS", "result": skewed})  # another extractor: refused, sent again
            await asyncio.sleep(0.5)
            assert not waiting.done()
            depth = queue_depth(settings.broker, fleet.queue)
            fleet._take(task_id, {"status": "SUCCESS", "result": result})
            fleet._take(task_id, {"status": "SUCCESS", "result": result})  # the same result again
            got = await waiting
            assert got.document is not None and got.document.to_markdown() == real.document.to_markdown()  # type: ignore[union-attr]
            return fleet.taken, fleet.duplicates, fleet.skews, depth

    taken, duplicates, skews, depth = asyncio.run(scenario())
    assert (taken, duplicates, skews) == (1, 1, 1)
    assert depth == 2  # the first send and the one after the skew wait for a matching worker


def test_the_daemon_sends_at_most_max_pending_checks_and_records_their_results(
    redis_server: RedisServer, workers: Workers, tmp_path: Path,
) -> None:
    from .test_daemon import DaemonProcess, HeldSite, held_targets

    held = HeldSite()
    daemon: DaemonProcess | None = None
    try:
        held.hold()
        config = write_config(tmp_path, held_targets(held, 5), defaults={"jitter": 0, "timeout": "60s", "concurrency": 8})
        config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}', max_pending: 2}}\n")
        workers.start("w1", concurrency=4, visibility="120s")
        daemon = DaemonProcess(config, tmp_path / "d.log")
        # five checks are due; the workers could take four, the daemon sends two and waits
        assert wait_for(lambda: held.in_flight == 2 and len(daemon.events("back-pressure")) >= 1, 60), daemon.log.read_text()[-2000:]
        assert wait_for(lambda: held.max_in_flight > 2, 1.5) is False
        event = daemon.events("back-pressure")[0]
        assert event["bound"] == 2 and event["waiting_on_workers"] == 2
        held.gate.set()
        ends = daemon.wait_event("fetch-end", count=5, timeout=60)
        assert {e["outcome"] for e in ends} == {"first-version"}
        assert held.max_in_flight == 2
        assert daemon.stop() == 0
    finally:
        if daemon is not None and daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
        held.close()
    assert rows(tmp_path / "monitor.db", "select count(*) from versions") == [(5,)]


def test_a_pass_whose_workers_all_die_fails_within_its_timeout(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    release = threading.Event()
    url = site.set("/hang", lambda: (release.wait(60), policy(1))[1])
    config = write_config(tmp_path, [{"id": "hang", "service": "S", "document": "privacy-policy", "url": url}], defaults={"timeout": "30s", "retries": 0})
    config.write_text(config.read_text() + f"distributed: {{broker: '{redis_server.url}', wait_for_workers: 2s}}\n")
    only = workers.start("w1", concurrency=1, visibility="60s")
    check = subprocess.Popen([sys.executable, "-m", "monitor", "--config", str(config), "check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: site.hits["/hang"] == 1, timeout=60)
        only.send_signal(signal.SIGKILL)
        only.wait(10)
        killed = time.monotonic()
        out, err = check.communicate(timeout=60)
    finally:
        release.set()
        if check.poll() is None:
            check.kill()
    # the worker's heartbeat lapses (8 s), then wait_for_workers (2 s) passes
    assert time.monotonic() - killed < 25
    assert check.returncode == 1
    assert f"error: no worker alive on {redis_server.url} (waited 2s)" in err and "1 unfinished check not recorded" in err
    assert "Traceback" not in err
    assert rows(tmp_path / "monitor.db", "select count(*) from fetches") == [(0,)]  # nothing recorded for the unfinished check


def test_redis_traffic_of_an_unchanged_check_is_under_1_kb(redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    """All the bytes the Redis server moves (in and out, its own counters) for a pass of
    unchanged checks through a real worker, less the same time with no checks (heartbeats,
    idle polling), divided by the checks: under 1 KB each."""
    import asyncio
    from dataclasses import replace

    from monitor.check import CheckContext, run_pass
    from monitor.distributed import Fleet
    from monitor.fetch import Fetcher
    from monitor.store import Store
    from monitor.targets import load_config

    n = 48
    targets = [{"id": f"p{i}", "service": "S", "document": "privacy-policy", "url": site.set(f"/p{i}", policy(i))} for i in range(n)]
    config_path = write_config(tmp_path, targets, defaults={"host_delay": "0s", "host_concurrency": 16})
    config_path.write_text(config_path.read_text() + f"distributed: {{broker: '{redis_server.url}'}}\n")
    config = load_config(config_path)
    assert config.distributed is not None
    config = replace(config, defaults=replace(config.defaults, concurrency=config.distributed.max_pending))
    workers.start("w1", concurrency=4, visibility="60s")
    client = redis_server.client()

    def traffic() -> int:
        stats = client.info("stats")
        return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])

    async def scenario() -> tuple[int, int, Any]:
        store = Store.open(config)
        store.sync_targets(config.targets)
        try:
            async with Fleet(config.distributed, config.defaults) as fleet, Fetcher(config.defaults) as fetcher:
                await fleet.wait_for_workers(30)
                ctx = CheckContext(config, store, fetcher, capturer=fleet.capture)
                first = await run_pass(ctx, list(config.targets))
                assert first.counts["first-version"] == n, first.text()
                await asyncio.sleep(1.0)
                before, started = traffic(), time.monotonic()
                summary = await run_pass(ctx, list(config.targets))
                used, elapsed = traffic() - before, time.monotonic() - started
                await run_pass(ctx, [])  # the baseline: a pass with no checks, as long as the real one
                before = traffic()
                await asyncio.sleep(elapsed)
                return used, traffic() - before, summary
        finally:
            store.close()

    used, baseline, summary = asyncio.run(scenario())
    assert summary.counts["unchanged"] == n, summary.text()
    per_check = (used - baseline) / n
    print(f"Redis bytes per unchanged check: {per_check:.0f} ({used} in the pass, {baseline} at rest as long)")
    assert per_check < 1024, (used, baseline, per_check)


def test_rabbitmq_is_a_broker_by_its_url_and_requeues_a_killed_workers_task(
        rabbitmq_server: RabbitServer, redis_server: RedisServer, workers: Workers, site: Site, tmp_path: Path) -> None:
    """The same workers and daemon on RabbitMQ (results, heartbeats and the host limiter stay
    in Redis): only the URL changes. RabbitMQ gives a dead consumer's unacknowledged message
    to another at once, so a worker killed mid-fetch costs no visibility timeout."""
    release = threading.Event()
    requests: list[float] = []

    def slow() -> str:
        requests.append(time.monotonic())
        if len(requests) == 1:
            release.wait(60)  # the first fetch hangs until its worker is killed
        return policy(99)

    n = 4
    targets = [{"id": f"p{i}", "service": "S", "document": "privacy-policy", "url": site.set(f"/p{i}", policy(i))} for i in range(n)]
    slow_site = Site()  # a server of its own: only the worker fetching it holds a connection there
    targets.append({"id": "slow", "service": "S", "document": "privacy-policy", "url": slow_site.set("/slow", slow)})
    config = write_config(tmp_path, targets, defaults={"timeout": "6s", "retries": 0})
    config.write_text(config.read_text() + f"distributed: {{broker: '{rabbitmq_server.url}', results: '{redis_server.url}'}}\n")
    workers.broker = rabbitmq_server.url
    workers.start("w1", concurrency=2, visibility="10m")  # RabbitMQ needs no visibility timeout: none may pass
    workers.start("w2", concurrency=2, visibility="10m")
    check = subprocess.Popen([sys.executable, "-m", "monitor", "-v", "--config", str(config), "check"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(requests) == 1, timeout=60)
        victim = _kill_the_worker_fetching(workers, slow_site.port)
        out, err = check.communicate(timeout=90)
    finally:
        release.set()
        if check.poll() is None:
            check.kill()
        slow_site.close()
    assert check.returncode == 0, err
    assert f"checked {n + 1}, new version {n + 1}, unchanged 0, failed 0" in out, out
    assert len(requests) == 2  # the hung fetch, then the other worker's
    db = tmp_path / "monitor.db"
    assert rows(db, "select count(distinct target_id), count(*) from versions") == [(n + 1, n + 1)]
    assert rows(db, "select outcome, count(*) from fetches group by outcome") == [("new-version", n + 1)]
    assert wait_for(lambda: redis_server.client().exists(f"monitor:worker:{victim}") == 0, timeout=20)
    status = run_cli("--config", str(config), "status")
    assert status.code == 0
    assert "workers: 1 alive on amqp://" in status.out and ": 0 waiting" in status.out, status.out
