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


class LockError(MonitorError):
    """Another daemon already holds the database."""


class BrowserError(MonitorError):
    """No usable browser, or the browser could not be started."""


class AlertError(MonitorError):
    """An alert channel could not deliver (connection, authentication, rejected message)."""

    def __init__(self, message: str, *, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


class FetchError(MonitorError):
    """A capture failed. `kind` is a stable, typed classification stored with the fetch.

    Kinds: network, dns, timeout, http-403, http-404, http-410, http-429, http-5xx, http-error,
    bot-wall, selector-missing, empty, too-short, non-html, browser-crashed, extract-failed.
    """

    exit_code = 1
    RETRYABLE = frozenset({"network", "timeout", "http-429", "http-5xx", "browser-crashed"})

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        self.kind = kind
        self.url = url
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE
