"""Telling a response that is not the document from one that is: a typed error for a
non-2xx status, a bot wall or captcha, a block page served with a 200, and an HTML shell
that needs JavaScript (for `auto`). The markers are data, in monitor/data/botwall.yaml;
lxml is imported when the first HTML page has to be read."""

from __future__ import annotations

from typing import Any

from ..charset import decode_body
from ..errors import FetchError
from ..extract import load_data
from .model import Page
from .sites import retry_after


def _status_error(status: int, url: str, body: bytes, headers: dict[str, str]) -> FetchError | None:
    """A typed error for a non-2xx response (None when the status is fine)."""
    if 200 <= status < 300:
        return None
    if status in (401, 403, 429, 503) and looks_like_bot_wall(body):
        return FetchError("bot-wall", f"{url} answered {status} with a bot wall or captcha", url=url, status=status)
    if status == 429:
        return FetchError("http-429", f"{url} answered 429 Too Many Requests", url=url, status=status, retry_after=retry_after(headers))
    if status >= 500:
        return FetchError("http-5xx", f"{url} answered {status}", url=url, status=status, retry_after=retry_after(headers))
    if status in (403, 404, 410):
        return FetchError(f"http-{status}", f"{url} answered {status}", url=url, status=status)
    return FetchError("http-error", f"{url} answered {status}", url=url, status=status)


def looks_like_bot_wall(body: bytes) -> bool:
    head = body[:20000].decode("utf-8", errors="replace").lower()
    return any(marker in head for marker in load_data("botwall.yaml")["markers"])


def needs_javascript(body: bytes) -> bool:
    head = body[:50000].decode("utf-8", errors="replace").lower()
    return any(marker in head for marker in load_data("botwall.yaml")["needs_javascript"])


def check_block_page(page: Page) -> None:
    """Raise `bot-wall` if a 2xx HTML page is a block or challenge page (Cloudflare, Akamai,
    PerimeterX, DataDome, ...) rather than the document. A block page is short: only pages
    whose visible text is under `block_pages.max_text` are looked at, and they must show a
    block page's title, a phrase of one, or a vendor's fingerprint in the HTML (all data, in
    monitor/data/botwall.yaml). Pages that merely mention captchas or bot vendors are long,
    or lack the titles and phrases, and pass."""
    reason = block_page_reason(page)
    if reason:
        raise FetchError("bot-wall", f"{page.url} answered {page.status} with a block page ({reason}); not recorded",
                         url=page.url, status=page.status)


def block_page_reason(page: Page) -> str | None:
    if page.fmt != "html":
        return None
    rules = load_data("botwall.yaml")["block_pages"]
    if len(page.body) > rules["max_html_bytes"]:
        return None
    html = decode_body(page.body, page.content_type, html=True)
    if _text_longer_than(html, rules["max_text"]):
        return None  # a document, not a block page: most pages, told without reading the markup
    title, text, markup = _read_html(html)
    if len(text) > rules["max_text"]:
        return None
    if title in rules["titles"]:
        return f"title {title!r}"
    for phrase in rules["phrases"]:
        if phrase in text:
            return repr(phrase)
    for mark in rules["fingerprints"]:
        if mark in markup:
            return repr(mark)
    return None


_UNSEEN = frozenset(("script", "style", "noscript", "template"))


class _TextCounter:
    """A parser target keeping the body's text outside scripts and styles, in order: the
    text _read_html measures, of which every prefix, collapsed, is no longer than the whole."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.in_body = False
        self.unseen = 0

    def start(self, tag: str, attrib: Any) -> None:
        if tag == "body":
            self.in_body = True
        elif tag in _UNSEEN:
            self.unseen += 1

    def end(self, tag: str) -> None:
        if tag in _UNSEEN and self.unseen:
            self.unseen -= 1

    def data(self, text: str) -> None:
        if self.in_body and not self.unseen:
            self.pieces.append(text)

    def close(self) -> None:
        return None

    def length(self) -> int:
        """The length of the text so far, collapsed as _read_html collapses it."""
        return len(" ".join("".join(self.pieces).split()))


def _text_longer_than(html: str, limit: int, chunk: int = 8192) -> bool:
    """Whether the page's visible text (as _read_html measures it) is surely over `limit`
    characters, read only as far as needed: a policy page says so in its first few KB, so
    neither the rest of it nor its attributes (which _read_html gathers, for the short pages
    that may be block pages) are parsed. False means: read the page in full."""
    import lxml.etree

    counter = _TextCounter()
    parser = lxml.etree.HTMLParser(target=counter)
    try:
        for start in range(0, len(html), chunk):
            parser.feed(html[start:start + chunk])
            if counter.length() > limit:
                return True
        parser.close()
    except (lxml.etree.LxmlError, ValueError):
        return False
    return counter.length() > limit


def _read_html(html: str) -> tuple[str, str, str]:
    """(title, visible text, markup) of a page, lowercased, whitespace collapsed. The markup
    is what a reader does not see (attribute values, scripts, styles), where vendors leave
    their fingerprints; a page that names a vendor in its text does not match there."""
    import lxml.html
    from lxml.etree import ParserError

    try:
        doc = lxml.html.document_fromstring(html)
    except (ParserError, ValueError):
        return "", "", ""
    hidden = [" ".join(node.attrib.values()) for node in doc.iter() if isinstance(node.tag, str) and node.attrib]
    for node in doc.xpath("//script|//style|//noscript|//template"):
        hidden.append(node.text_content())
        node.drop_tree()
    titles = doc.xpath("//title")
    title = " ".join(titles[0].text_content().split()).lower() if titles else ""
    body = doc.find("body")
    text = " ".join((body if body is not None else doc).text_content().split()).lower()
    return title, text, " ".join(hidden).lower()
