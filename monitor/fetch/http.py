"""The `http` engine: plain HTTP(S) with httpx. httpx is imported inside the functions that
use it, not here: a check that needs no fetch (or only the browser) does not pay for its
import, and a one-target check's start-up time matters. The transport is lazy for the same
reason (see _lazy_transport)."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from ..errors import FetchError
from ..store import Exchange, utcnow
from .classify import _status_error
from .engines import Engine, engine
from .model import NO_SHOTS, Page, ShotPolicy, Validators, _too_large
from .sites import _left_site, same_site

if TYPE_CHECKING:
    from ..targets import Target
    from .capture import Fetcher


def _in_chain(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _lazy_transport(httpx: Any, **options: Any) -> Any:
    """httpx's transports, one per scheme, each built on its first request. Building the
    https one makes the SSL context (the CA bundle parsed, 20-60 ms), which a pass over
    http:// pages never uses and a one-target check would pay in full. The http:// one gets
    a TLS context that trusts nothing: it never speaks TLS (a redirect to https:// is a new
    request, routed to the verifying transport), and if it ever did, it would fail closed."""
    import ssl

    class LazyTransport(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self._by_scheme: dict[str, Any] = {}

        async def handle_async_request(self, request: Any) -> Any:
            scheme = "http" if request.url.scheme == "http" else "https"
            transport = self._by_scheme.get(scheme)
            if transport is None:
                extra = {"verify": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)} if scheme == "http" else {}
                transport = self._by_scheme[scheme] = httpx.AsyncHTTPTransport(**options, **extra)
            return await transport.handle_async_request(request)

        async def aclose(self) -> None:
            for transport in self._by_scheme.values():
                await transport.aclose()

    return LazyTransport()


@engine("http")
class HttpEngine(Engine):
    """Plain HTTP(S) with httpx: fast and cheap, enough for most static policy pages. The whole
    request, body included, must finish within the target's timeout (a server that sends one
    byte a second does not hold it), and the body may not exceed Limits.max_bytes once
    decompressed (a gzip bomb is cut off after the limit, not inflated)."""

    def __init__(self, fetcher: Fetcher):
        super().__init__(fetcher)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> Any:
        """The engine's one client, made on first use: a client per fetch would build a new
        SSL context (parsing the CA bundle, ~20 ms) and a new connection every time. Headers
        and timeouts are per request; the client holds no cookies between fetches."""
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)
            self._client = httpx.AsyncClient(
                follow_redirects=False, cookies=_NoCookies(), transport=_lazy_transport(httpx, limits=limits),
            )
            self._loop = loop
        return self._client

    @staticmethod
    async def _follow(client: Any, url: str, headers: dict[str, str], timeout: Any) -> Any:
        """The final response (streaming) after at most 10 redirects. Cookies set during the
        redirects are kept for this fetch only, in its own jar (the client keeps none)."""
        import httpx

        jar = httpx.Cookies()
        redirects: list[dict[str, Any]] = []
        for _ in range(11):
            request = client.build_request("GET", url, headers=headers, timeout=timeout, cookies=jar)
            response = await client.send(request, stream=True, follow_redirects=False)
            if not response.has_redirect_location:  # 301, 302, 303, 307, 308 with a Location (not a 304)
                response.extensions = {**response.extensions, "monitor_redirects": redirects}
                return response
            jar.extract_cookies(response)
            redirects.append({"url": str(response.url), "status": response.status_code, "location": response.headers["location"]})
            url = str(response.url.join(response.headers["location"]))
            await response.aclose()
        raise httpx.TooManyRedirects("too many redirects", request=request)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()

    async def get(self, url: str, target: Target, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        import httpx

        limits = self.fetcher.limits
        headers = {
            "User-Agent": target.user_agent,
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,application/pdf;q=0.8,*/*;q=0.5",
            "Accept-Language": f"{target.locale},{target.locale.split('-')[0]};q=0.9,en;q=0.5",
        }
        if validators is not None:
            if validators.etag:
                headers["If-None-Match"] = validators.etag
            if validators.last_modified:
                headers["If-Modified-Since"] = validators.last_modified
        timeout = httpx.Timeout(target.timeout)
        client = self._http()
        started = utcnow()
        try:
            async with asyncio.timeout(target.timeout):
                try:
                    response = await self._follow(client, url, headers, timeout)
                    try:
                        declared = response.headers.get("content-length", "").strip()
                        if declared.isdigit() and int(declared) > limits.max_bytes:
                            raise _too_large(url, "the page", limits.max_bytes, response.status_code)
                        chunks: list[bytes] = []
                        size = 0
                        async for chunk in response.aiter_bytes():  # decompressed, chunk by chunk
                            size += len(chunk)
                            if size > limits.max_bytes:
                                raise _too_large(url, "the page", limits.max_bytes, response.status_code)
                            chunks.append(chunk)
                        body = b"".join(chunks)
                    finally:
                        await response.aclose()
                except httpx.TimeoutException:
                    raise FetchError("timeout", f"{url} did not answer within {target.timeout:g}s", url=url) from None
                except httpx.TooManyRedirects:
                    raise FetchError("http-error", f"{url} redirects too many times", url=url) from None
                except (httpx.HTTPError, OSError) as exc:
                    kind = "dns" if _in_chain(exc, socket.gaierror) else "network"
                    raise FetchError(kind, f"{url}: {exc.__class__.__name__}: {exc or 'connection failed'}", url=url) from None
        except TimeoutError:
            raise FetchError("timeout", f"{url} did not finish within {target.timeout:g}s (the fetch's time limit)", url=url) from None
        final_url = str(response.url)
        if not same_site(url, final_url):
            raise _left_site(url, final_url, response.status_code)
        head = {k.lower(): v for k, v in response.headers.items()}
        if response.status_code == 304 and validators is not None:
            return Page(
                url=url, final_url=validators.final_url or final_url, status=304, body=b"", content_type=validators.content_type,
                engine="http", etag=head.get("etag") or validators.etag,
                last_modified=head.get("last-modified") or validators.last_modified, not_modified=True,
            )
        error = _status_error(response.status_code, url, body, head)
        if error:
            raise error
        exchange = Exchange(
            requested_url=url, url=final_url, status=response.status_code, reason=response.reason_phrase,
            headers=_raw_headers(response.headers), body=body, started_at=started, engine="http",
            http_version=response.http_version, request_headers=_raw_headers(response.request.headers),
            redirects=tuple(response.extensions.get("monitor_redirects") or ()),
        )
        return Page(
            url=url, final_url=final_url, status=response.status_code, body=body,
            content_type=head.get("content-type"), engine="http", etag=head.get("etag"),
            last_modified=head.get("last-modified"), exchange=exchange,
        )


def _raw_headers(headers: Any) -> tuple[tuple[str, str], ...]:
    """Headers as they were on the wire: names in their own case, repeats kept, in order."""
    return tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers.raw)


class _NoCookies:
    """A cookie jar that keeps nothing: the shared client must not carry one target's
    cookies to the next (each fetch starts as a fresh visitor, as with a client per fetch)."""

    def __new__(cls) -> Any:
        import http.cookiejar

        class _Policy(http.cookiejar.DefaultCookiePolicy):
            def set_ok(self, cookie: Any, request: Any) -> bool:
                return False

        return http.cookiejar.CookieJar(policy=_Policy())
