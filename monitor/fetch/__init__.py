"""Getting pages: plain HTTP, a shared headless Chromium, or `auto` (HTTP first).

Engines register themselves by name (`@engine("http")`). One `Fetcher` holds what outlives a
single fetch: the long-lived browser (relaunched if it dies, recycled every N fetches to bound
memory), the per-host politeness gate, and the retry policy. `capture_target` turns a target
into a `Capture`: the raw pages, the extracted document and the fetch record, or a typed
FetchError. A browser context and its page serve one fetch at a time and are kept for the next
fetch of the same host (same user agent and locale) once the page is on about:blank and the
cookies, permissions and the site's storage are cleared; contexts are never shared between
hosts, and a failed fetch's context is closed.

Every fetch is bounded (`Limits`): total time (the target's `timeout`, per attempt), the
document's bytes (after decompression), everything a browser page loads, the elements of its
DOM, and how long a renderer may stay busy in a script when the engine reads the page. A page
that crosses one ends as a typed failure (`timeout`, `too-large`), as does a block page served
with a 200 (`bot-wall`) and a page that leaves its site or navigates after loading
(`navigated-away`): none of them becomes a version.

The package, one job a module (the names below are re-exported here, so `from monitor.fetch
import Fetcher` is the way in):

    model.py     Limits, Page, ShotPolicy, Validators, Prior, Capture: plain values
    classify.py  status errors, bot walls, block pages, needs_javascript
    sites.py     site_of, same_site, retry_after
    gate.py      HostGate: per-host concurrency and delay
    engines.py   the @engine registry and the Engine base
    http.py      HttpEngine (httpx, imported lazily; lazy TLS transport)
    browser.py   BrowserEngine (Playwright, imported lazily), screenshots
    watch.py     _Watch: a browser page's bytes and navigations, from the browser's events
    capture.py   Fetcher, capture_target, extraction_key, refuse_unusable, the fetch record
"""

from __future__ import annotations

from ..charset import HTML_TYPES
from .browser import (
    MAX_IDLE_CONTEXTS,
    SETTLE_CAP,
    SETTLE_QUIET,
    SHOT_FORMAT,
    SHOT_MAX_HEIGHT,
    SHOT_MAX_TILE,
    SHOT_QUALITY,
    BrowserEngine,
)
from .capture import (
    DECODER_VERSION,
    MAX_RETRY_AFTER,
    TOO_SHORT_RATIO,
    Fetcher,
    capture_target,
    capture_with,
    extraction_key,
    refuse_unusable,
)
from .classify import (
    block_page_reason,
    check_block_page,
    looks_like_bot_wall,
    needs_javascript,
)
from .engines import ENGINES, Engine, engine
from .gate import HostGate
from .http import HttpEngine
from .model import (
    MAX_BYTES,
    NO_SHOTS,
    TEXT_TYPES,
    Capture,
    Limits,
    Page,
    Prior,
    ShotPolicy,
    Validators,
)
from .sites import retry_after, same_site, site_of
from .watch import BLOCKED_RESOURCES

__all__ = [
    "BLOCKED_RESOURCES", "DECODER_VERSION", "ENGINES", "HTML_TYPES", "MAX_BYTES", "MAX_IDLE_CONTEXTS", "MAX_RETRY_AFTER",
    "NO_SHOTS", "SETTLE_CAP", "SETTLE_QUIET", "SHOT_FORMAT", "SHOT_MAX_HEIGHT", "SHOT_MAX_TILE", "SHOT_QUALITY",
    "TEXT_TYPES", "TOO_SHORT_RATIO", "BrowserEngine", "Capture", "Engine", "Fetcher", "HostGate", "HttpEngine", "Limits",
    "Page", "Prior", "ShotPolicy", "Validators", "block_page_reason", "capture_target", "capture_with",
    "check_block_page", "engine", "extraction_key", "looks_like_bot_wall", "needs_javascript", "refuse_unusable",
    "retry_after", "same_site", "site_of",
]
