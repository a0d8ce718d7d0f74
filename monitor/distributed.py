"""Fetching on many machines: Celery workers fetch and extract, this process stays the writer.

Loaded only when `distributed:` is set in targets.yaml (or --broker is given) and by
`monitor worker`: without them nothing here, nor Celery, is imported.

The split is at the check's one seam, `CheckContext.capture(target, prior)`: a worker runs
the same `fetch.capture_with` a single process runs, from a task that carries the target's
settings and its prior state (fetch.Prior); the daemon diffs, flags, stores and alerts as
always. A task's result is either small (the bytes or the text equal the last fetch's: the
fetch record and a hash) or the raw pages and the extracted document, zlib-compressed.

Delivery: tasks are acknowledged late, so a worker killed mid-task leaves its message to be
redelivered to another worker after the broker's visibility timeout (each worker bounds its
tasks below it). Each check has one id, awaited once: a result that arrives twice is taken
once, and the store never makes the same text a version twice anyway. When the Redis server
restarts (its run_id changes) the daemon sends again every check still waiting. Tasks go to
a queue named after the extractor version, so a worker of another version never takes them,
and a result of another version is refused (reported, sent again), never diffed.

Traffic (measured: benchmarks/distributed.py, tests/test_distributed.py): a Celery message
costs about 600 bytes of envelope and kombu stores it three times over (LPUSH, the BRPOP
that takes it, the unacked copy kept for redelivery), and Celery's result backend added a
SETEX, a PUBLISH, a SUBSCRIBE and a GET per task. So checks due together travel in one
task message (to idle workers spread over them; while others are at the workers, up to a
second's worth of checks in one), protocol 1 with the arguments as zlib-compressed JSON
(`mz`), the extraction key and raw hash cut to their first 16 digits; the task ignores its
result, and the worker pushes the results (compressed together, grouped over up to a
second) to a Redis list of the sender's, which the daemon reads with a blocking pop.
Acknowledgement stays late: a worker pushes a message's results before it is acknowledged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import logging
import os
import struct
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from .errors import FetchError, MonitorError

if TYPE_CHECKING:
    from .extract import Document
    from .fetch import Capture, Prior
    from .targets import Defaults, DistributedConfig, Target

log = logging.getLogger("monitor")

PROTOCOL = 1
TASK_NAME = "monitor.fetch_and_extract"
HEARTBEAT_SECONDS = 2.0
WORKER_KEY = "monitor:worker:"  # + hostname: the live worker's last beat (expires)
WORKERS_SEEN = "monitor:workers-seen"  # hostname -> last beat, kept to report a worker gone
DEFAULT_VISIBILITY = 600.0
SERIALIZER = "mz"  # JSON, zlib-compressed, base85 (kombu sends the body as it is: no base64 over it)
CONTENT_TYPE = "application/x-monitor-mz"
REPLY_KEY = "monitor:r:"  # + the sender's id: the list a worker pushes its results to
REPLY_TTL = 900  # seconds a reply list outlives its last push (a sender gone for good)
BATCH_MAX = 32  # checks in one task message at most
LINGER = 0.02  # seconds the sender waits for more checks due at the same time
GATHER = 1.0  # seconds a message may wait to fill while other checks are at the workers
RUN_ID_EVERY = 5.0  # seconds between two looks at the Redis server's run_id (a restart)
RAW_PREFIX = 16  # hex digits of the last raw sha256 a task carries
KEY_PREFIX = 16  # hex digits of the last extraction key a task carries
TEXT_HASH_ECHO = "="  # in a task instead of the last text sha256 the worker only echoes back


class DistributedError(MonitorError):
    """The fleet cannot do the work: no worker alive, the broker unreachable."""

    exit_code = 1


def signature() -> str:
    """What decides extracted text: a worker of another signature would give other text."""
    from . import __version__
    from .extract import EXTRACTOR_VERSION
    from .fetch import DECODER_VERSION

    return f"{__version__}-x{EXTRACTOR_VERSION}-d{DECODER_VERSION}"


def queue_name(prefix: str) -> str:
    return f"{prefix}.{signature()}"


def task_deadline(target: Target) -> float:
    """The longest one fetch of this target may take, every attempt and page, and the
    browser after plain HTTP for `auto` (fetch.Fetcher._attempt's bound per attempt)."""
    per_attempt = target.timeout + 40.0
    engines = 2 if target.engine == "auto" else 1
    return len(target.urls) * (target.retries + 1) * per_attempt * engines + 60.0 * target.retries


# ----------------------------------------------------------------------------- the wire

_TARGET_DEFAULTS: dict[str, Any] | None = None
_SKIP = ("schedule", "tags", "alerts_to", "enabled", "service", "document", "confirm_delay", "discover")  # what a fetch does not use


def _target_defaults() -> dict[str, Any]:
    global _TARGET_DEFAULTS  # a constant computed once: the dataclass's defaults
    if _TARGET_DEFAULTS is None:
        from .targets import Target

        probe = Target(id="x", service="x", document="other", urls=("http://x",))
        _TARGET_DEFAULTS = {f.name: getattr(probe, f.name) for f in fields(Target)}
    return _TARGET_DEFAULTS


def encode_task(target: Target, prior: Prior, defaults: Defaults) -> dict[str, Any]:
    """The task's one argument: the target's settings (those differing from the defaults)
    and its prior state; a worker needs nothing else."""
    base = _target_defaults()
    settings = {f.name: getattr(target, f.name) for f in fields(target) if f.name not in _SKIP}
    t = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if k in ("id", "urls") or v != base[k]}
    p: dict[str, Any] = {k: v for k, v in asdict(prior).items() if v is not None and k != "validators"}
    if prior.known is not None and target.screenshot != "true":
        # The worker compares the extraction key (its first KEY_PREFIX digits: the worker
        # only answers "the same", and the writer has the whole key); the text hash it only
        # sends back when the key matches (same_as), and the writer has it: a placeholder goes
        # instead (fetch compares the text hash itself only for screenshot: true).
        p["known"] = [prior.known[0][:KEY_PREFIX], TEXT_HASH_ECHO]
        if prior.known_raw is not None:
            # The raw hash is only sent back (a 304, the same bytes) or compared (no
            # screenshot of the same page again): its first RAW_PREFIX digits do.
            p["known_raw"] = prior.known_raw[:RAW_PREFIX]
    if prior.validators is not None:
        p["validators"] = [prior.validators.etag, prior.validators.last_modified, prior.validators.final_url, prior.validators.content_type]
    return {
        "p": PROTOCOL, "sig": signature(), "t": t, "prior": p, "deadline": task_deadline(target),
        "d": [defaults.host_concurrency, defaults.host_delay, defaults.recycle_after],
    }


def decode_task(payload: dict[str, Any]) -> tuple[Target, Prior, tuple[int, float, int], float]:
    from .fetch import Prior, Validators
    from .targets import Target

    t = dict(payload["t"])
    for key in ("urls", "select", "remove"):
        if key in t:
            t[key] = tuple(t[key])
    t.setdefault("service", "?")
    t.setdefault("document", "other")
    p = dict(payload["prior"])
    if "known" in p:
        p["known"] = tuple(p["known"])
    if "validators" in p:
        p["validators"] = Validators(*p["validators"])
    concurrency, delay, recycle = payload["d"]
    return Target(**t), Prior(**p), (int(concurrency), float(delay), int(recycle)), float(payload["deadline"])


def _document_dict(doc: Document) -> dict[str, Any]:
    return {
        "c": [[c.kind, c.text, c.level, list(c.section)] for c in doc.clauses], "s": doc.source, "t": doc.title,
        "ed": doc.effective_date, "et": doc.effective_text, "f": doc.fmt,
    }


def _document(data: dict[str, Any]) -> Document:
    from .extract import Clause, Document

    clauses = [Clause(kind, text, level, tuple(section)) for kind, text, level, section in data["c"]]
    return Document(clauses, source=data["s"], title=data["t"], effective_date=data["ed"], effective_text=data["et"], fmt=data["f"])


def encode_capture(capture: Capture, worker: str, prior: Prior | None = None) -> dict[str, Any]:
    """A capture as the task's result. Unchanged bytes (no document) carry no pages, and
    what the writer sent in the task (extraction key, raw and text hashes) is not sent back:
    `"s": 1` says "the same as you said"."""
    from .fetch.model import same_digest

    record = {k: v for k, v in asdict(capture.record).items() if v is not None}
    out: dict[str, Any] = {"p": PROTOCOL, "sig": signature(), "w": worker, "r": record}
    if capture.engine_choice:
        out["c"] = capture.engine_choice
    if capture.same_as:
        out["s"] = capture.same_as  # (never the placeholder: that matches the prior, "s": 1, below)
        if prior is not None and prior.known is not None and capture.same_as == prior.known[1] \
                and same_digest(prior.known[0], capture.record.extract_key or "") \
                and prior.known_raw and (capture.record.raw_sha256 or "").startswith(prior.known_raw):  # (prefixes in a task)
            out["s"] = 1
            del record["extract_key"], record["raw_sha256"]
    if capture.error is not None:
        e = capture.error
        out["e"] = [e.kind, str(e), e.url, e.status]
    if capture.document is not None:
        head = json.dumps({"doc": _document_dict(capture.document), "raws": [[r.url, r.ext, r.content_type, len(r.data)] for r in capture.raws]},
                          ensure_ascii=False, separators=(",", ":")).encode()
        blob = struct.pack(">I", len(head)) + head + b"".join(r.data for r in capture.raws)
        out["z"] = base64.b64encode(zlib.compress(blob, 6)).decode("ascii")
    return out


def narrow_result(result: dict[str, Any], target: Target) -> dict[str, Any]:
    """A result without what the sender knows: the target's id and URL (and the final URL
    when it is that URL), and what its group says once for all (protocol, version, worker)."""
    record = dict(result["r"])
    if record.get("target_id") == target.id:
        del record["target_id"]
    if record.get("requested_url") == target.url:
        del record["requested_url"]
        if record.get("final_url") == target.url:
            record["final_url"] = 1  # the same
    return {k: v for k, v in {**result, "r": record}.items() if k not in ("p", "sig", "w")}


def widen_result(result: dict[str, Any], target: Target) -> dict[str, Any]:
    """narrow_result undone."""
    if "r" not in result:
        return result
    record = dict(result["r"])
    record.setdefault("target_id", target.id)
    record.setdefault("requested_url", target.url)
    if record.get("final_url") == 1:
        record["final_url"] = target.url
    return {**result, "r": record}


def decode_capture(data: dict[str, Any], prior: Prior | None = None) -> Capture:
    from .fetch import Capture
    from .records import FetchRecord, RawPart

    fields_ = dict(data["r"])
    if data.get("s") == 1:  # the same bytes as the prior the task carried
        assert prior is not None and prior.known is not None, "a result relative to a prior needs that prior"
        fields_.update(extract_key=prior.known[0], raw_sha256=prior.known_raw)
        data = {**data, "s": prior.known[1]}
    elif data.get("s") == TEXT_HASH_ECHO:  # the same extraction key, other raw bytes' hash: the text hash is ours
        assert prior is not None and prior.known is not None, "a result relative to a prior needs that prior"
        data = {**data, "s": prior.known[1]}
    record = FetchRecord(**fields_)
    error = None
    if "e" in data:
        kind, message, url, status = data["e"]
        error = FetchError(kind, message, url=url, status=status)
    document, raws = None, []
    if "z" in data:
        blob = zlib.decompress(base64.b64decode(data["z"]))
        (size,) = struct.unpack(">I", blob[:4])
        head = json.loads(blob[4:4 + size])
        document = _document(head["doc"])
        offset = 4 + size
        for url, ext, content_type, length in head["raws"]:
            raws.append(RawPart(url, blob[offset:offset + length], ext, content_type))
            offset += length
    return Capture(record.target_id, record, document=document, raws=raws, error=error, engine_choice=data.get("c"), same_as=data.get("s"))


# ----------------------------------------------------------------------------- Celery


def pack(obj: Any) -> str:
    """JSON, zlib-compressed, as base85 text (safe in JSON and in a Redis value)."""
    return base64.b85encode(zlib.compress(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(), 9)).decode("ascii")


def unpack(text: str | bytes) -> Any:
    return json.loads(zlib.decompress(base64.b85decode(text)))


def _register_serializer() -> None:
    from kombu.serialization import register

    register(SERIALIZER, pack, unpack, content_type=CONTENT_TYPE, content_encoding="utf-8")


def celery_app(broker: str, results: str, queue: str, *, visibility_timeout: float | None = None, restore_interval: float | None = None) -> Any:
    """The Celery app both sides use (created here, never at import time). No result
    backend: results go to the sender's reply list (Fleet, WorkerRuntime)."""
    from celery import Celery

    _register_serializer()
    transport: dict[str, Any] = {"body_encoding": None}  # the body is base85 text already
    if visibility_timeout is not None:
        transport["visibility_timeout"] = int(max(1, visibility_timeout))
    if restore_interval is not None:
        transport["unacked_restore_interval"] = restore_interval
        transport["unacked_restore_throttle"] = 1
    app = Celery("monitor", broker=broker, set_as_current=False)
    app.conf.update(
        task_protocol=1, task_serializer=SERIALIZER, accept_content=[SERIALIZER, "json"], task_ignore_result=True,
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_default_queue=queue, task_create_missing_queues=True,
        broker_transport_options=transport, broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None, worker_hijack_root_logger=False,
        worker_enable_remote_control=False, worker_send_task_events=False, task_send_sent_event=False,
    )
    return app


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)


@dataclass
class WorkerInfo:
    hostname: str
    pid: int | None
    chromium: str | None
    tasks: int
    signature: str | None
    heartbeat: str | None
    age_seconds: float | None
    alive: bool
    visibility_timeout: float | None = None


def workers(results_url: str, *, client: Any = None) -> list[WorkerInfo]:
    """Workers seen: alive ones (a fresh beat) and those gone (a beat once, none now)."""
    from .records import parse_timestamp, utcnow

    client = client or redis_client(results_url)
    seen = client.hgetall(WORKERS_SEEN)
    live = {k.decode()[len(WORKER_KEY):] for k in client.scan_iter(f"{WORKER_KEY}*")}
    now = parse_timestamp(utcnow())
    out = []
    for name, raw in sorted(seen.items()):
        beat = json.loads(raw)
        age = (now - parse_timestamp(beat["at"])).total_seconds()
        hostname = name.decode()
        out.append(WorkerInfo(hostname, beat.get("pid"), beat.get("chromium"), int(beat.get("tasks", 0)), beat.get("sig"),
                              beat["at"], round(age, 1), hostname in live, beat.get("vt")))
    return out


def queue_depth(broker: str, queue: str, *, client: Any = None) -> int | None:
    """Messages waiting in the queue (Redis brokers: the list and its priority lists; AMQP:
    the queue's ready messages, None when it does not exist yet)."""
    if broker.startswith(("amqp://", "amqps://", "pyamqp://")):
        from kombu import Connection

        try:
            with Connection(broker, connect_timeout=5) as conn:
                return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except Exception:  # noqa: BLE001 - not declared yet (no worker ever consumed it) or unreachable
            return None
    if not broker.startswith(("redis://", "rediss://")):
        return None
    client = client or redis_client(broker)
    sep = "\x06\x16"
    return sum(int(client.llen(name)) for name in (queue, *(f"{queue}{sep}{p}" for p in (3, 6, 9))))


# ----------------------------------------------------------------------------- the daemon's side


@dataclass
class _Waiting:
    target: Target
    prior: Prior
    payload: dict[str, Any]
    future: asyncio.Future[Capture]
    sent_at: float
    sends: int = 1


class Fleet:
    """The writer's side: sends each capture to the workers and waits for its result.

    Celery and Redis calls that send run on one thread of their own, the blocking pop of the
    results on another (neither client is shared between threads, and the event loop never
    blocks on the network). Checks due together go out as one task message (up to
    BATCH_MAX, split over the live workers); one collector pops the results of them all."""

    def __init__(self, settings: DistributedConfig, defaults: Defaults, *, event: Callable[..., None] | None = None, poll: float = 0.5):
        self.settings = settings
        self.defaults = defaults
        self.queue = queue_name(settings.queue)
        self.reply = REPLY_KEY + uuid.uuid4().hex[:12]
        self._event = event or (lambda name, **fields: log.info("%s %s", name, " ".join(f"{k}={v}" for k, v in fields.items())))
        self._poll = poll  # the blocking pop's timeout
        self._io = ThreadPoolExecutor(1, thread_name_prefix="fleet")
        self._rx = ThreadPoolExecutor(1, thread_name_prefix="fleet-results")
        self._waiting: dict[str, _Waiting] = {}
        self._ids = itertools.count(1)
        self._outbox: list[str] = []
        self._outbox_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._collector: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._app: Any = None
        self._redis: Any = None
        self._broker_redis: Any = None
        self._run_ids: tuple[Any, ...] | None = None
        self._last_check = 0.0
        self._alive: set[str] = set()
        self.taken = 0  # results taken
        self.duplicates = 0  # results for a check no longer waiting (a redelivered task's second result)
        self.skews = 0
        self.messages = 0  # task messages sent (each carries one or more checks)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def start(self) -> Fleet:
        def connect() -> None:
            self._app = celery_app(self.settings.broker, self.settings.results_url, self.queue)
            self._redis = redis_client(self.settings.results_url)
            same = self.settings.broker == self.settings.results_url
            if self.settings.broker.startswith(("redis://", "rediss://")):
                self._broker_redis = self._redis if same else redis_client(self.settings.broker)

        await self._call(connect)
        self._collector = asyncio.create_task(self._collect())
        self._sender = asyncio.create_task(self._send_loop())
        return self

    async def close(self) -> None:
        for task in (self._collector, self._sender):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for waiting in self._waiting.values():
            if not waiting.future.done():
                waiting.future.cancel()
        self._waiting.clear()
        self._io.shutdown(wait=False, cancel_futures=True)
        self._rx.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Fleet:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pending(self) -> int:
        return len(self._waiting)

    # ------------------------------------------------------------------ sending

    async def capture(self, target: Target, prior: Prior) -> Capture:
        """The capturer of a CheckContext: one check in the next task message, its result decoded."""
        payload = encode_task(target, prior, self.defaults)
        check_id = f"{next(self._ids):x}"
        future: asyncio.Future[Capture] = asyncio.get_running_loop().create_future()
        self._waiting[check_id] = _Waiting(target, prior, payload, future, time.monotonic())
        try:
            self._outbox.append(check_id)
            self._outbox_ready.set()
            self._wake.set()
            return await future
        finally:
            self._waiting.pop(check_id, None)

    def batches(self, ids: list[str]) -> list[list[str]]:
        """Checks due together, in messages: at most BATCH_MAX each, and at least one per
        live worker, so that every worker gets a share."""
        if not ids:
            return []
        size = max(1, min(BATCH_MAX, math.ceil(len(ids) / max(1, len(self._alive)))))
        return [ids[i:i + size] for i in range(0, len(ids), size)]

    @property
    def fill(self) -> int:
        """Checks a message waits for while others are still at the workers: a message's
        envelope (about 500 bytes, stored three times over by kombu) is then shared by many."""
        return max(1, min(BATCH_MAX, self.settings.max_pending // 4))

    def _in_flight(self) -> int:
        return len(self._waiting) - sum(1 for i in self._outbox if i in self._waiting)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._outbox_ready.wait()
            await asyncio.sleep(LINGER)  # the other checks due now join this message
            # Workers still busy with earlier checks: this message can wait (up to GATHER)
            # for the checks their results will make due. Idle workers: it goes at once.
            until, busy = loop.time() + GATHER, self._in_flight() > 0
            while self._in_flight() > 0 and len(self._outbox) < self.fill and loop.time() < until:
                self._outbox_ready.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._outbox_ready.wait(), until - loop.time())
            self._outbox_ready.clear()
            ids, self._outbox = [i for i in self._outbox if i in self._waiting], []
            # to busy workers in full messages (whichever is free first takes the next); to
            # idle ones spread, a share each
            for batch in (self.batches(ids) if not busy else [ids[i:i + BATCH_MAX] for i in range(0, len(ids), BATCH_MAX)]):
                await self._send_patiently(batch)

    async def _send_patiently(self, ids: list[str]) -> None:
        """Send, retrying while the broker is away (a Redis restart) for up to the longest
        deadline of the checks; past it they fail."""
        from .backoff import backoff

        patience = max(task_deadline(self._waiting[i].target) for i in ids if i in self._waiting) if any(i in self._waiting for i in ids) else 0
        deadline, attempt = time.monotonic() + patience, 0
        while True:
            ids = [i for i in ids if i in self._waiting and not self._waiting[i].future.done()]
            if not ids:
                return
            try:
                await self._call(self._send, ids)
                now = time.monotonic()
                for i in ids:
                    self._waiting[i].sent_at = now
                return
            except Exception as exc:
                attempt += 1
                if time.monotonic() > deadline:
                    error = DistributedError(f"cannot send {', '.join(self._waiting[i].target.id for i in ids)} to {self.settings.broker}: "
                                             f"{exc.__class__.__name__}: {exc}")
                    for i in ids:
                        if not self._waiting[i].future.done():
                            self._waiting[i].future.set_exception(error)
                    return
                await asyncio.sleep(backoff(attempt, base=0.2, cap=5.0))

    def message(self, ids: list[str]) -> dict[str, Any]:
        """One task message's argument: the checks (id, target, prior), the politeness
        settings and the list to push the results to."""
        first = self._waiting[ids[0]].payload
        checks = [[i, self._waiting[i].payload["t"], self._waiting[i].payload["prior"]] for i in ids]  # deadline: from the target
        return {"p": PROTOCOL, "sig": first["sig"], "d": first["d"], "r": self.reply, "c": checks}

    def _send(self, ids: list[str]) -> None:
        self._app.send_task(TASK_NAME, args=[self.message(ids)], queue=self.queue)
        self.messages += 1

    # ------------------------------------------------------------------ collecting

    async def _collect(self) -> None:
        from .backoff import backoff

        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
                if not self._waiting:
                    continue
            try:
                ready, restarted = await loop.run_in_executor(self._rx, self._fetch_results, failures > 0)
            except Exception as exc:  # the Redis server down or restarting: retry, then resend
                failures += 1
                if failures == 1:
                    self._event("broker-unreachable", error=f"{exc.__class__.__name__}: {exc}", waiting=len(self._waiting))
                await asyncio.sleep(backoff(failures, base=0.1, cap=2.0))
                continue
            if failures:
                self._event("broker-reachable", after_failures=failures)
                failures = 0
            for check_id, meta in ready:
                self._take(check_id, meta)
            if restarted:
                await self._resend_all("the Redis server restarted")
            await self._resend_overdue()

    async def _resend_overdue(self) -> None:
        """A safety net for a task lost some other way (a queue flushed by hand): with workers
        alive, a check without a result long past its deadline and the workers' default
        visibility timeout is sent again (same id: whichever result comes first is taken)."""
        if not self._alive:
            return
        now = time.monotonic()
        for check_id, waiting in list(self._waiting.items()):
            lease = task_deadline(waiting.target) + DEFAULT_VISIBILITY
            if not waiting.future.done() and now - waiting.sent_at > lease:
                self._event("resend", reason=f"no result within {lease:g}s", target=waiting.target.id)
                await self._resend(check_id, waiting)

    def _fetch_results(self, look_now: bool = False) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
        """Pop what the workers pushed (blocking up to the poll interval), and every few
        seconds (at once after a failure) look for a restarted server and the live workers."""
        restarted = False
        now = time.monotonic()
        if look_now or now - self._last_check > RUN_ID_EVERY:  # first, before blocking: a restart during the pop is seen next time
            self._last_check = now
            clients = [c for c in (self._redis, self._broker_redis) if c is not None]
            run_ids = tuple(c.info("server")["run_id"] for c in clients)
            restarted = self._run_ids is not None and run_ids != self._run_ids
            self._run_ids = run_ids
            alive = {k.decode()[len(WORKER_KEY):] for k in self._redis.scan_iter(f"{WORKER_KEY}*")}
            for gone in self._alive - alive:
                self._event("worker-gone", worker=gone)
            for new in alive - self._alive:
                self._event("worker-seen", worker=new)
            self._alive = alive
        ready: list[tuple[str, dict[str, Any]]] = []
        if restarted:
            return ready, restarted
        popped = self._redis.blpop([self.reply], timeout=self._poll)
        while popped is not None:
            group = unpack(popped[1])
            for item in group["c"]:
                check_id = item.pop("i")
                if "x" in item:
                    ready.append((check_id, {"status": "FAILURE", "result": item["x"]}))
                elif "l" in item:  # not started: too little of the worker's bound was left
                    ready.append((check_id, {"status": "LATER", "worker": group["w"]}))
                else:
                    ready.append((check_id, {"status": "SUCCESS", "result": {"p": group["p"], "sig": group["sig"], "w": group["w"], **item}}))
            raw = self._redis.lpop(self.reply)
            popped = (self.reply, raw) if raw is not None else None
        return ready, restarted

    def _take(self, check_id: str, meta: dict[str, Any]) -> None:
        waiting = self._waiting.get(check_id)
        if waiting is None or waiting.future.done():
            self.duplicates += 1
            return
        if meta.get("status") == "LATER":
            self._event("resend", reason=f"{meta['worker']} had too little time left to start it", target=waiting.target.id)
            asyncio.ensure_future(self._resend(check_id, waiting))
            return
        if meta.get("status") != "SUCCESS":
            result = meta.get("result")
            waiting.future.set_exception(DistributedError(f"worker task failed for {waiting.target.id}: {result}"))
            return
        result = meta["result"]
        if result.get("sig") != signature():
            self.skews += 1
            self._event("version-skew", target=waiting.target.id, worker=result.get("w"), worker_version=result.get("sig"), ours=signature())
            asyncio.ensure_future(self._resend(check_id, waiting))  # not diffed: sent again for a matching worker
            return
        self.taken += 1
        waiting.future.set_result(decode_capture(widen_result(result, waiting.target), waiting.prior))

    async def _resend(self, check_id: str, waiting: _Waiting) -> None:
        waiting.sends += 1
        waiting.sent_at = time.monotonic()
        try:
            await self._call(self._send, [check_id])
        except Exception as exc:
            if not waiting.future.done():
                waiting.future.set_exception(DistributedError(f"cannot send {waiting.target.id} to the workers: {exc}"))

    async def _resend_all(self, reason: str) -> None:
        waiting = [cid for cid, w in list(self._waiting.items()) if not w.future.done()]
        self._event("resend", reason=reason, checks=len(waiting))
        for batch in self.batches(waiting):
            await self._send_patiently(batch)

    # ------------------------------------------------------------------ workers

    async def live_workers(self) -> set[str]:
        def read() -> set[str]:
            return {k.decode()[len(WORKER_KEY):] for k in self._redis.scan_iter(f"{WORKER_KEY}*")}

        return await self._call(read)

    async def wait_for_workers(self, timeout: float) -> set[str]:
        """The live workers, once there is one; DistributedError after `timeout` without."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                alive = await self.live_workers()
            except Exception as exc:
                raise DistributedError(f"cannot reach {self.settings.results_url}: {exc.__class__.__name__}: {exc}") from None
            if alive:
                return alive
            if time.monotonic() >= deadline:
                raise DistributedError(no_worker_message(self.settings, timeout))
            await asyncio.sleep(0.2)


def no_worker_message(settings: DistributedConfig, waited: float) -> str:
    return (f"no worker alive on {settings.broker} (waited {waited:g}s); start one with "
            f"`monitor worker --broker {settings.broker}`, or run without distributed: for one process")


def with_broker(settings: DistributedConfig | None, broker: str | None) -> DistributedConfig | None:
    """--broker over the file's `distributed:` (or instead of it)."""
    if broker is None:
        return settings
    from .targets import DistributedConfig

    return DistributedConfig(broker=broker) if settings is None else replace(settings, broker=broker)


def worker_id() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = [
    "DistributedError", "Fleet", "TASK_NAME", "WorkerInfo", "celery_app", "decode_capture", "decode_task",
    "encode_capture", "encode_task", "queue_depth", "signature", "task_deadline", "with_broker", "workers",
]


async def fleet_pass(
    config: Any, store: Any, targets: Any, *, rules: Any = None, confirm: bool = True,
    on_start: Callable[..., None] | None = None, on_done: Callable[..., None] | None = None,
) -> Any:
    """`monitor check` through the workers: the same run_pass, its captures made by the
    fleet, up to `max_pending` at once. Fails (DistributedError) when no worker is alive
    for `wait_for_workers`, before the pass or during it; nothing is recorded for the
    checks it did not finish."""
    from .check import CheckContext, run_pass
    from .fetch import Fetcher

    settings = config.distributed
    async with Fleet(settings, config.defaults) as fleet:
        await fleet.wait_for_workers(settings.wait_for_workers)
        wide = replace(config, defaults=replace(config.defaults, concurrency=settings.max_pending))
        ctx = CheckContext(wide, store, Fetcher(config.defaults), rules=rules, confirm=confirm, capturer=fleet.capture)
        task = asyncio.create_task(run_pass(ctx, targets, on_start=on_start, on_done=on_done))
        last_alive = time.monotonic()
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if task.done():
                break
            try:
                alive = await fleet.live_workers()
            except Exception:
                alive = {"?"}  # Redis unreachable for a moment: the collector waits for it
            if alive:
                last_alive = time.monotonic()
            elif time.monotonic() - last_alive > settings.wait_for_workers:
                unfinished = fleet.pending
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                plural = "s" if unfinished != 1 else ""
                raise DistributedError(no_worker_message(settings, settings.wait_for_workers) + f"; {unfinished} unfinished check{plural} not recorded")
        return task.result()


def fleet_status(settings: DistributedConfig, targets: Any = ()) -> dict[str, Any]:
    """For `monitor status`: the workers seen and the queue depth (or why they are unknown),
    and the longest task deadline of `targets` (a worker's visibility timeout should exceed it)."""
    queue = queue_name(settings.queue)
    try:
        client = redis_client(settings.results_url)
        seen = workers(settings.results_url, client=client)
        depth = queue_depth(settings.broker, queue, client=client if settings.broker == settings.results_url else None)
    except Exception as exc:
        return {"broker": settings.broker, "queue": queue, "error": f"{exc.__class__.__name__}: {exc}", "workers": [], "queue_depth": None}
    longest = max((task_deadline(t) for t in targets), default=None)
    return {"broker": settings.broker, "queue": queue, "queue_depth": depth, "max_pending": settings.max_pending,
            "longest_task": longest, "workers": [asdict(w) for w in seen]}


def status_lines(info: dict[str, Any]) -> list[str]:
    """The fleet part of `monitor status`, as text."""
    if "error" in info:
        return [f"workers: unknown ({info['broker']} unreachable: {info['error']})"]
    alive = [w for w in info["workers"] if w["alive"]]
    depth = "unknown" if info["queue_depth"] is None else info["queue_depth"]
    lines = [f"workers: {len(alive)} alive on {info['broker']}, queue {info['queue']}: {depth} waiting (daemon sends at most {info['max_pending']} at once)"]
    for w in info["workers"]:
        state = "alive" if w["alive"] else "GONE"
        skew = "" if w["signature"] == signature() else f", version {w['signature']} (daemon {signature()}: gets no tasks)"
        short = w["alive"] and w["visibility_timeout"] and info["longest_task"] and w["visibility_timeout"] - 5 < info["longest_task"]
        cut = f", visibility timeout {w['visibility_timeout']:g}s cuts tasks before the longest deadline ({info['longest_task']:g}s)" if short else ""
        lines.append(f"  {w['hostname']}  {state}  pid {w['pid']}  chromium {w['chromium'] or '-'}  {w['tasks']} tasks  "
                     f"heartbeat {w['age_seconds']}s ago{skew}{cut}")
    return lines
