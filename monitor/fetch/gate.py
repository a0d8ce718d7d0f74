"""Politeness: how many requests may hit one host at once, and how far apart."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit


class HostGate:
    """At most N requests at once per host, and a minimum pause between hits on a host: the
    next request starts at least `delay` after the previous one started and after the last
    one finished (so the pause holds at the server, whatever the client's own latency)."""

    def __init__(self, per_host: int, delay: float):
        self.per_host = per_host
        self.delay = delay
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._next_start: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _host(self, url: str) -> str:
        return (urlsplit(url).hostname or "").lower()

    async def __call__(self, url: str) -> _GateSlot:
        host = self._host(url)
        sem = self._sems.setdefault(host, asyncio.Semaphore(self.per_host))
        await sem.acquire()
        lock = self._locks.setdefault(host, asyncio.Lock())
        async with lock:
            wait = self._next_start.get(host, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_start[host] = time.monotonic() + self.delay
        return _GateSlot(self, host, sem)

    def finished(self, host: str) -> None:
        self._next_start[host] = max(self._next_start.get(host, 0.0), time.monotonic() + self.delay)


class _GateSlot:
    def __init__(self, gate: HostGate, host: str, sem: asyncio.Semaphore):
        self.gate = gate
        self.host = host
        self.sem = sem

    def release(self) -> None:
        self.gate.finished(self.host)
        self.sem.release()
