"""`monitor worker`: a Celery worker that fetches and extracts for a daemon (or a
`monitor check`) elsewhere. It needs no database and no config file: each task message
carries checks, each with its target and prior state (monitor.distributed), and the answers
go to the sender's reply list (compressed together, a few milliseconds' worth at a time).

One event loop thread per worker process holds the fetcher, so the pool's threads share one
Chromium and one politeness gate, and the gate itself lives in Redis: the pause between two
requests to a host holds across every worker of the fleet, timed by the Redis server's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .distributed import (
    HEARTBEAT_SECONDS, PROTOCOL, REPLY_TTL, TASK_NAME, WORKER_KEY, WORKERS_SEEN, decode_task, encode_capture, narrow_result, pack, signature, task_deadline,
)

if TYPE_CHECKING:
    from .fetch import Capture, Fetcher, Prior
    from .targets import Target

log = logging.getLogger("monitor")

# One sorted set per host: the holders (member: a token, score: when its lease ends) and the
# member "~", scored with the earliest start of the next request (ZREMRANGEBYSCORE drops
# both once past). One key keeps the two calls a fetch makes short on the wire.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local nxt = redis.call('ZSCORE', KEYS[1], '~')
if nxt and tonumber(nxt) > now then return now - tonumber(nxt) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -50 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), '~')
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[4]), tonumber(ARGV[3]) + 1000))
return now
"""

# Releases go together (RELEASE_AFTER): KEYS are the hosts, ARGV[1] the delay, then per
# host its holder's token and how many milliseconds ago that holder finished.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local delay = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[2 * i])
  local later = now - tonumber(ARGV[2 * i + 1]) + delay
  local nxt = tonumber(redis.call('ZSCORE', KEYS[i], '~') or '0')
  if later > nxt then
    redis.call('ZADD', KEYS[i], later, '~')
    if redis.call('PTTL', KEYS[i]) < delay + 1000 then redis.call('PEXPIRE', KEYS[i], delay + 1000) end
  end
end
return now
"""


def _function_library() -> str:
    """The two scripts as a Redis 7 function library: FCALL names them in 2 bytes where
    EVALSHA takes 40."""
    body = []
    for name, script in (("ga", _ACQUIRE), ("gr", _RELEASE)):
        code = script.replace("KEYS", "keys").replace("ARGV", "args")
        body.append(f"redis.register_function('{name}', function(keys, args)\n{code}\nend)")
    return "#!lua name=mg\n" + "\n".join(body)


class RedisHostGate:
    """fetch.HostGate's rule (at most N requests at once per host; the next starts at least
    `delay` after the previous started and finished), kept in Redis for the whole fleet. A
    holder that dies frees its place after `lease` seconds."""

    RELEASE_AFTER = 0.05  # seconds a freed place waits for others to be freed with it

    def __init__(self, client: Any, per_host: int, delay: float, lease: float):
        self.client = client
        self.per_host = per_host
        self.delay = delay
        self.lease = lease
        self._acquire_script = client.register_script(_ACQUIRE)
        self._release_script = client.register_script(_RELEASE)
        self._functions: bool | None = None  # FCALL (Redis 7+), else EVALSHA; None: not loaded yet
        self._releases: set[asyncio.Task[Any]] = set()
        self._released: list[tuple[str, str, float]] = []  # (key, token, when) not sent yet

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        import redis.exceptions

        if self._functions is None:
            try:
                await self.client.function_load(_function_library(), replace=True)
                self._functions = True
            except redis.exceptions.ResponseError:  # before Redis 7
                self._functions = False
        if not self._functions:
            script = self._acquire_script if name == "ga" else self._release_script
            return await script(keys=keys, args=args)
        try:
            return await self.client.fcall(name, len(keys), *keys, *args)
        except redis.exceptions.ResponseError as exc:
            if "function" not in str(exc).lower():
                raise
            self._functions = None  # a restarted server without the library: load it again
            return await self._run(name, keys, args)

    async def _acquire(self, keys: list[str], args: list[Any]) -> Any:
        return await self._run("ga", keys, args)

    async def _release(self, keys: list[str], args: list[Any]) -> Any:
        return await self._run("gr", keys, args)

    @staticmethod
    def _keys(url: str) -> list[str]:
        host = (urlsplit(url).hostname or "").lower()
        return [f"mg:{host}"]  # short: it goes over the wire twice a fetch

    async def __call__(self, url: str) -> _RedisSlot:
        from .backoff import backoff

        keys, token = self._keys(url), uuid.uuid4().hex[:10]
        failures = 0
        while True:
            try:
                answer = int(await self._acquire(keys=keys, args=[token, self.per_host, int(self.delay * 1000), int(self.lease * 1000)]))
            except Exception as exc:  # Redis restarting: wait for it (the task has its own deadline)
                failures += 1
                if failures == 1:
                    log.warning("host limiter unreachable (%s); waiting", exc)
                await asyncio.sleep(backoff(failures, base=0.1, cap=2.0))
                continue
            if answer >= 0:
                return _RedisSlot(self, keys, token)
            await asyncio.sleep(-answer / 1000)

    def release(self, keys: list[str], token: str) -> None:
        """Free the place, within RELEASE_AFTER, together with the others freed meanwhile
        (one call instead of one per fetch; the pause is counted from this moment)."""
        self._released.append((keys[0], token, time.monotonic()))
        if len(self._released) == 1:
            asyncio.get_running_loop().call_later(self.RELEASE_AFTER, self.flush)

    def flush(self) -> asyncio.Task[Any] | None:
        released, self._released = self._released, []
        if not released:
            return None

        async def run() -> None:
            now = time.monotonic()
            args: list[Any] = [int(self.delay * 1000)]
            for _, token, at in released:
                args += [token, int((now - at) * 1000)]
            with contextlib.suppress(Exception):  # the lease frees them anyway
                await self._release(keys=[key for key, _, _ in released], args=args)

        task = asyncio.ensure_future(run())
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        return task


class _RedisSlot:
    def __init__(self, gate: RedisHostGate, keys: list[str], token: str):
        self.gate, self.keys, self.token = gate, keys, token

    def release(self) -> None:
        self.gate.release(self.keys, self.token)


class WorkerRuntime:
    """What a worker process keeps between tasks: an event loop thread, the fetchers (one
    per set of politeness settings, normally one), the Redis limiter, and its heartbeat."""

    FLUSH_AFTER = 1.0  # seconds a finished check's result waits for others to go with it (a message's last goes at once)

    def __init__(self, results_url: str, *, visibility_timeout: float, hostname: str, concurrency: int = 4):
        self.results_url = results_url
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.hostname = hostname
        self.tasks = 0
        self.started = time.time()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fetch-loop", daemon=True)
        self._fetchers: dict[tuple[int, float, int], Fetcher] = {}
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        self._lock = threading.Lock()
        self._aredis: Any = None
        self._slots: asyncio.Semaphore | None = None  # fetches at once in this worker, over every message
        self._outgoing: dict[str, list[dict[str, Any]]] = {}  # reply list -> results not pushed yet
        self._pushing: dict[str, asyncio.Lock] = {}  # one push at a time per reply list
        self._flush_due: dict[str, asyncio.TimerHandle] = {}  # reply list -> its pending timed push

    def start(self) -> None:
        self._thread.start()
        self._beat.start()

    def stop(self) -> None:
        self._stop.set()

        async def close() -> None:
            for fetcher in self._fetchers.values():
                released = fetcher.gate.flush() if isinstance(fetcher.gate, RedisHostGate) else None
                with contextlib.suppress(Exception):
                    if released is not None:
                        await released  # places freed just now are not left to their lease
                    await fetcher.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        with contextlib.suppress(Exception):
            from .distributed import redis_client

            redis_client(self.results_url).delete(WORKER_KEY + self.hostname)

    # ------------------------------------------------------------------ one task

    def run(self, message: dict[str, Any]) -> int:
        """The task body, on a pool thread: the message's checks run on the fetch loop (at
        most `concurrency` fetches at once in this worker); each result is pushed to the
        sender's list as it is done, and all of them before this returns (and the message is
        acknowledged)."""
        future = asyncio.run_coroutine_threadsafe(self._run(message), self._loop)
        return future.result()

    async def _run(self, message: dict[str, Any]) -> int:
        reply, checks = message["r"], message["c"]
        if message.get("sig") != signature():
            # Routed by version, this should not happen; answer so the daemon reports the skew.
            for check in checks:
                self._emit(reply, {"i": check[0]})
            await self._flush(reply)
            return len(checks)
        started = time.monotonic()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)

        async def one(check: list[Any]) -> None:
            check_id, t, p = check[:3]
            target, prior, politeness, _ = decode_task({"t": t, "prior": p, "d": message["d"], "deadline": 0})
            deadline = task_deadline(target)
            assert self._slots is not None
            try:
                async with self._slots:
                    # never outlive the broker's redelivery, the wait for a slot included; a
                    # check left too little of it goes back to the sender, to be sent again
                    left = self.visibility_timeout - 5.0 - (time.monotonic() - started)
                    if left < min(deadline, target.timeout, (self.visibility_timeout - 5.0) / 2):
                        result = {"i": check_id, "l": 1}
                    else:
                        capture = await self._capture(target, prior, politeness, min(deadline, left))
                        result = {"i": check_id, **narrow_result(encode_capture(capture, self.hostname, prior), target)}
            except Exception as exc:
                log.exception("check %s failed", t.get("id"))
                result = {"i": check_id, "x": f"{exc.__class__.__name__}: {exc}"}
            with self._lock:
                self.tasks += 1
            self._emit(reply, result)

        await asyncio.gather(*(one(c) for c in checks))
        await self._flush(reply)
        return len(checks)

    def _emit(self, reply: str, result: dict[str, Any]) -> None:
        self._outgoing.setdefault(reply, []).append(result)
        if reply not in self._flush_due:  # the first of a group: it goes, with whatever joins it, shortly
            def due() -> None:
                del self._flush_due[reply]
                asyncio.ensure_future(self._flush(reply))

            self._flush_due[reply] = self._loop.call_later(self.FLUSH_AFTER, due)

    async def _flush(self, reply: str) -> None:
        """Push the results waiting for `reply` in one value; retried while Redis is away
        (the message stays unacknowledged meanwhile, so nothing is lost)."""
        lock = self._pushing.setdefault(reply, asyncio.Lock())
        async with lock:  # a flush waits for one in flight: when it returns, all are pushed
            await self._push(reply)

    async def _push(self, reply: str) -> None:
        from .backoff import backoff

        # What is waiting now goes, once: results that arrive meanwhile wait for their own
        # group's turn (pushing again at once would send them one or two at a time).
        results = self._outgoing.pop(reply, None)
        failures = 0
        while results:
            try:
                client = self._client()
                async with client.pipeline(transaction=False) as pipe:
                    pipe.rpush(reply, pack({"p": PROTOCOL, "sig": signature(), "w": self.hostname, "c": results}))
                    pipe.expire(reply, REPLY_TTL)
                    await pipe.execute()
                return
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot push results (%s); retrying", exc)
                await asyncio.sleep(backoff(failures, base=0.1, cap=2.0))

    def _client(self) -> Any:
        if self._aredis is None:
            import redis.asyncio

            self._aredis = redis.asyncio.Redis.from_url(self.results_url, socket_connect_timeout=3, socket_timeout=5)
        return self._aredis

    async def _capture(self, target: Target, prior: Prior, politeness: tuple[int, float, int], bound: float) -> Capture:
        from .fetch import Capture, capture_with
        from .records import FetchRecord, utcnow

        fetcher = self._fetcher(politeness)
        started = utcnow()
        try:
            async with asyncio.timeout(max(1.0, bound)):
                return await capture_with(fetcher, target, prior)
        except TimeoutError:
            from .errors import FetchError

            error = FetchError("timeout", f"{target.url} did not finish within {bound:g}s (the worker's bound for one task)", url=target.url)
            record = FetchRecord(target.id, started, utcnow(), target.url, engine=target.engine, error_kind="timeout", error_message=str(error))
            return Capture(target.id, record, error=error)

    def _fetcher(self, politeness: tuple[int, float, int]) -> Fetcher:
        if politeness not in self._fetchers:
            from dataclasses import replace

            from .fetch import Fetcher
            from .targets import DEFAULTS_FIELDS, Defaults, default_value

            per_host, delay, recycle = politeness
            base = Defaults(**{spec.name: default_value(spec) for spec in DEFAULTS_FIELDS})
            defaults = replace(base, host_concurrency=per_host, host_delay=delay, recycle_after=recycle)
            fetcher = Fetcher(defaults)
            fetcher.gate = RedisHostGate(self._client(), per_host, delay, lease=self.visibility_timeout)  # type: ignore[assignment]
            self._fetchers[politeness] = fetcher
        return self._fetchers[politeness]

    # ------------------------------------------------------------------ heartbeat

    def beat(self) -> dict[str, Any]:
        from .records import utcnow

        chromium = next((v for f in list(self._fetchers.values()) if (v := f.browser_version())), None)
        return {"hostname": self.hostname, "pid": os.getpid(), "chromium": chromium, "tasks": self.tasks, "sig": signature(),
                "vt": self.visibility_timeout, "at": utcnow()}

    def _heartbeat(self) -> None:
        from .distributed import redis_client

        client = None
        while not self._stop.is_set():
            try:
                client = client or redis_client(self.results_url)
                beat = json.dumps(self.beat())
                client.set(WORKER_KEY + self.hostname, beat, ex=int(HEARTBEAT_SECONDS * 4))
                client.hset(WORKERS_SEEN, self.hostname, beat)
            except Exception as exc:  # Redis restarting: beat again soon
                log.warning("heartbeat failed: %s", exc)
                client = None
            self._stop.wait(HEARTBEAT_SECONDS)


def run_worker(broker: str, results: str, queue: str, *, concurrency: int, hostname: str, visibility_timeout: float,
               restore_interval: float | None = None, loglevel: str = "WARNING") -> int:
    """Run a Celery worker in this process until stopped (SIGTERM: finish the tasks at hand)."""
    from .distributed import celery_app, queue_name

    app = celery_app(broker, results, queue_name(queue), visibility_timeout=visibility_timeout, restore_interval=restore_interval)
    runtime = WorkerRuntime(results, visibility_timeout=visibility_timeout, hostname=hostname, concurrency=concurrency)

    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
    def fetch_and_extract(self: Any, message: dict[str, Any]) -> int:
        return runtime.run(message)

    runtime.start()
    try:
        app.worker_main([
            "worker", "--pool", "threads", "--concurrency", str(concurrency), "--queues", queue_name(queue),
            "--hostname", hostname, "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", loglevel,
        ])
    finally:
        runtime.stop()
    return 0


__all__ = ["RedisHostGate", "WorkerRuntime", "run_worker"]
