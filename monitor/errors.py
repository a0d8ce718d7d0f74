"""The package's exception tree.

Library code raises these; the CLI turns them into one-line messages and exit codes in one
place (monitor.cli). Third-party exceptions (Playwright, httpx, sqlite3, smtplib) are converted
at the module that calls the library, so callers never match on message substrings.
"""

from __future__ import annotations

from dataclasses import dataclass


class MonitorError(Exception):
    """Base class. `exit_code` is what the CLI exits with when this reaches it."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a configuration file: where it is, which field, what to do."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"


class ConfigError(MonitorError):
    """targets.yaml is missing, unreadable or invalid. Carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class InputError(MonitorError):
    """A file or version given on the command line cannot be used."""


class StoreError(MonitorError):
    """The database or snapshot directory cannot be used."""


class TamperedError(StoreError):
    """A stored file or row no longer matches the hash chain (`monitor verify` names it):
    the work ran and failed, so exit 1."""

    exit_code = 1


class LockError(MonitorError):
    """Another daemon already holds the database."""


class BrowserError(MonitorError):
    """No usable browser, or the browser could not be started."""


class AlertError(MonitorError):
    """An alert channel could not deliver (connection, authentication, rejected message)."""

    def __init__(self, message: str, *, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


# Every kind of failed fetch, in one table: the kind stored with the fetch row (fetches.
# error_kind), what it means, and whether it is retried within the check. The README's failure
# list is this table (a test keeps them equal). Failures are never versions.
FAILURE_KINDS: dict[str, tuple[str, bool]] = {
    "network": ("the connection failed or was cut", True),
    "dns": ("the host name does not resolve", False),
    "timeout": ("the fetch ran out of time: no answer, a server that trickles bytes, a page that never finishes "
                "loading, or a renderer kept busy by a script (the page is closed, the browser relaunched if it "
                "stops answering)", True),
    "http-403": ("the server answered 403 Forbidden", False),
    "http-404": ("the server answered 404 Not Found", False),
    "http-410": ("the server answered 410 Gone", False),
    "http-429": ("the server answered 429 Too Many Requests (Retry-After honoured)", True),
    "http-5xx": ("the server answered with a 5xx status", True),
    "http-error": ("another non-2xx status, or too many redirects", False),
    "bot-wall": ("a captcha, challenge or block page (Cloudflare, Akamai, PerimeterX, DataDome, ...) instead of the "
                 "document, whatever its status, 200 included", False),
    "navigated-away": ("the page left the target's site (a redirect to another site), or a script navigated "
                       "after the page had loaded", False),
    "too-large": ("over a size limit: the document's bytes (also after decompression), everything a browser page "
                  "loads, or the number of elements in its DOM", False),
    "selector-missing": ("the target's `select` or `wait_for` matched nothing", False),
    "empty": ("no text on the page", False),
    "too-short": ("under 30% of the previous version: a half-loaded or error page with a 200", False),
    "non-html": ("neither a web page, text nor PDF (JSON, an image, binary data)", False),
    "extract-failed": ("the page could not be read (a broken PDF, unparseable markup)", False),
    "browser-crashed": ("the browser died or failed during the fetch; it is relaunched", True),
    "internal": ("a bug in the monitor while checking this target; the other targets go on", False),
}


class FetchError(MonitorError):
    """A capture failed. `kind` is one of FAILURE_KINDS, stored with the fetch."""

    exit_code = 1
    RETRYABLE = frozenset(k for k, (_, retried) in FAILURE_KINDS.items() if retried)

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; add it to errors.FAILURE_KINDS")
        self.kind = kind
        self.url = url
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE
