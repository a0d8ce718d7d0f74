"""What one browser page does while the `browser` engine fetches it, seen from the
browser's network events (`_Watch`): the bytes it receives and navigations of its main
frame, each checked against the fetch's Limits as it happens. Kept apart from the engine
because it is the part that must not trust the page."""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import FetchError
from .model import Limits, _too_large

BLOCKED_RESOURCES = frozenset({"image", "media", "font"})


class _Watch:
    """What one browser page does, seen from the browser's events rather than from inside the
    page (so a script cannot hide it, nor a stuck renderer delay it): the bytes it receives,
    per document and in all, and navigations of its main frame once it has loaded. Crossing a
    limit sets `error` at once; the fetch stops there."""

    def __init__(self, url: str, limits: Limits):
        self.url = url
        self.limits = limits
        self.error: asyncio.Future[FetchError] = asyncio.get_running_loop().create_future()
        self.loaded = False
        self.page: Any = None
        self.received = 0
        self.documents: dict[str, int] = {}  # DevTools request id -> bytes received
        self.session: Any = None
        self.inflight = 0  # XHR and fetch requests under way (the page may still render what they bring)
        self._idle = asyncio.Event()
        self._idle.set()

    def trip(self, error: FetchError) -> None:
        if not self.error.done():
            self.error.set_result(error)

    def check(self) -> None:
        if self.error.done():
            raise self.error.result()

    async def attach(self, context: Any, page: Any) -> None:
        self.page = page
        page.on("load", self._on_load)
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_request_done)
        page.on("requestfailed", self._on_request_done)
        session = self.session = await context.new_cdp_session(page)
        session.on("Network.responseReceived", self._on_response)
        session.on("Network.dataReceived", self._on_data)
        session.on("Fetch.requestPaused", self._on_paused)
        await session.send("Network.enable")
        # images, media and fonts are never loaded: only they are paused (and failed), so the
        # document and scripts do not wait on a round trip through this process
        await session.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "resourceType": t} for t in _BLOCKED_CDP_TYPES]})

    async def detach(self) -> None:
        """Stop watching the page (it is kept for another fetch, which brings its own watch)."""
        page, session = self.page, self.session
        for name, handler in (("load", self._on_load), ("request", self._on_request),
                              ("requestfinished", self._on_request_done), ("requestfailed", self._on_request_done)):
            page.remove_listener(name, handler)
        if session is not None:
            await session.detach()

    def _on_paused(self, event: dict[str, Any]) -> None:
        asyncio.ensure_future(self._fail(event.get("requestId", "")))

    async def _fail(self, request_id: str) -> None:
        try:
            await self.session.send("Fetch.failRequest", {"requestId": request_id, "errorReason": "BlockedByClient"})
        except Exception:  # the page is gone already
            pass

    def _on_load(self, _page: Any) -> None:
        self.loaded = True  # the document's load event: from here on, a navigation leaves it

    async def idle(self, timeout: float) -> None:
        """Until no XHR or fetch is in flight, at most `timeout` seconds."""
        if timeout > 0:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                pass

    def _tracked(self, request: Any) -> bool:
        try:
            return request.resource_type in ("xhr", "fetch")
        except Exception:
            return False

    def _on_request_done(self, request: Any) -> None:
        if self._tracked(request) and self.inflight > 0:
            self.inflight -= 1
            if self.inflight == 0:
                self._idle.set()

    def _on_request(self, request: Any) -> None:
        if self._tracked(request):
            self.inflight += 1
            self._idle.clear()
        if not self.loaded:
            return  # redirects and script redirects during the load: the final URL's site is checked
        try:
            leaving = request.is_navigation_request() and request.frame == self.page.main_frame
        except Exception:
            return
        if leaving:
            self.trip(FetchError("navigated-away", f"{self.url}: a script navigated to {request.url} after the page had loaded; not recorded", url=self.url))

    def _on_response(self, event: dict[str, Any]) -> None:
        if event.get("type") != "Document":
            return
        response = event.get("response", {})
        self.documents.setdefault(event.get("requestId", ""), 0)
        length = {k.lower(): v for k, v in response.get("headers", {}).items()}.get("content-length", "").strip()
        if length.isdigit() and int(length) > self.limits.max_bytes:
            self.trip(_too_large(self.url, "the page", self.limits.max_bytes, response.get("status")))

    def _on_data(self, event: dict[str, Any]) -> None:
        size = int(event.get("dataLength") or 0)
        self.received += size
        request_id = event.get("requestId", "")
        if request_id in self.documents:
            self.documents[request_id] += size
            if self.documents[request_id] > self.limits.max_bytes:
                self.trip(_too_large(self.url, "the page (decompressed)", self.limits.max_bytes))
        if self.received > self.limits.max_page_bytes:
            self.trip(_too_large(self.url, "what the page loaded", self.limits.max_page_bytes))


_BLOCKED_CDP_TYPES = ("Image", "Media", "Font")  # BLOCKED_RESOURCES, as DevTools names them
