"""What to watch: loading and validating targets.yaml.

Every section declares its fields in a table (name, what it takes, help, parser). The same
table validates the file, fills per-target values from `defaults:`, and prints the field
reference (`monitor validate --fields`). Validation collects every problem at once, each with
file:line, the field and the fix, and rejects unknown keys with a "did you mean".
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError, Problem
from .severity import SEVERITIES

DEFAULT_CONFIG = "targets.yaml"
DOCUMENT_KINDS = ("privacy-policy", "terms", "faq", "ai-policy", "cookie-policy", "other")
ENGINES = ("auto", "http", "browser")
DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36 privacy-monitor/0.1"
)


class _Unset:
    """Marks a per-target field the file did not set, so it falls back to `defaults:`."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# ----------------------------------------------------------------------------- values

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def parse_duration(value: Any) -> float:
    """'30s', '15m', '6h', '1d', '1w' or a number of seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 6h or 1d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 6h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Schedule:
    """When a target is checked: a fixed interval, or a 5-field cron expression."""

    text: str
    interval: float | None = None  # seconds, for interval schedules
    cron: str | None = None

    def approx_interval(self) -> float:
        """Seconds between runs (for cron: between the next two fire times)."""
        if self.interval is not None:
            return self.interval
        from datetime import datetime, timezone

        from apscheduler.triggers.cron import CronTrigger

        trigger = CronTrigger.from_crontab(self.cron, timezone=timezone.utc)
        now = datetime.now(timezone.utc)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first)
        return (second - first).total_seconds() if first and second else 86400.0


def parse_schedule(value: Any) -> Schedule:
    text = str(value).strip()
    fix = "use an interval like 30s, 15m, 6h, 1d or a 5-field cron string like '0 6 * * *'"
    if len(text.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(text)
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid cron string ({exc}); {fix}") from None
        return Schedule(text=text, cron=text)
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a schedule; {fix}") from None
    if seconds < 1:
        raise ValueError(f"{text!r} is too short; the shortest schedule is 1s")
    return Schedule(text=text, interval=seconds)


def _string(value: Any) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
        raise ValueError("expected a non-empty string")
    return str(value).strip()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _no_controls(text: str) -> str:
    """Text that ends up in an email header or an HTTP request must stay one line: a CR or
    LF there would start a header of the page author's or the file editor's choosing."""
    found = _CONTROL.search(text)
    if found:
        raise ValueError(
            f"contains a control character ({found.group()!r} at position {found.start() + 1}); "
            "write it on one line, without line breaks, tabs or escapes such as \\r\\n"
        )
    return text


def _line_text(value: Any) -> str:
    """A non-empty, one-line string (names, user agent, subject prefix, header values)."""
    return _no_controls(_string(value))


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("expected a whole number of at least 1")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError("expected a number between 0 and 1 (0.1 means plus or minus 10%)")
    return float(value)


SCREENSHOT_CHOICES = ("on-change", "true", "false")


def _screenshot(value: Any) -> str:
    """false | true | on-change (YAML's bare true/false arrive as booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _choice(SCREENSHOT_CHOICES)(value)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value)
        if text not in options:
            hint = difflib.get_close_matches(text, options, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"{text!r} is not one of {', '.join(options)}{extra}")
        return text

    return parse


def _string_list(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("expected a string or a non-empty list of strings")
    return tuple(_string(item) for item in items)


def _css_list(value: Any) -> tuple[str, ...]:
    import soupsieve

    selectors = _string_list(value)
    for selector in selectors:
        try:
            soupsieve.compile(selector)
        except Exception as exc:  # soupsieve raises SelectorSyntaxError, a plain Exception subclass
            first = str(exc).splitlines()[0]
            raise ValueError(f"{selector!r} is not a valid CSS selector ({first})") from None
    return selectors


def _css(value: Any) -> str:
    return _css_list(_string(value))[0]


def _url(value: Any) -> str:
    text = _line_text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http(s) URL; write the full address, like https://example.com/privacy")
    return text


def _url_list(value: Any) -> tuple[str, ...]:
    return tuple(_url(item) for item in _string_list(value))


_SLUG = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _slug(value: Any) -> str:
    text = _string(value)
    if not _SLUG.match(text):
        raise ValueError(
            f"{text!r} is not a valid id; use lower-case letters, digits, '.', '_' or '-' (for example linkedin-privacy)"
        )
    return text


_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


def _lang(value: Any) -> str:
    text = _string(value)
    if not _LANG.match(text):
        raise ValueError(f"{text!r} is not a language code; use a code like en, fr or en-GB")
    return text


_EMAIL = re.compile(r"^[^@\s,<>]+@[^@\s,<>.]+(\.[^@\s,<>.]+)*$")  # user@host or user@example.org


def _email(value: Any) -> str:
    text = _string(value)
    if not _EMAIL.match(text):
        raise ValueError(f"{text!r} is not an email address")
    return text


def _email_list(value: Any) -> tuple[str, ...]:
    return tuple(_email(item) for item in _string_list(value))


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError("expected a port number between 1 and 65535")
    return value


def _env_name(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", text):
        raise ValueError(f"{text!r} is not an environment variable name (the password itself never goes in the file)")
    return text


def _apprise_urls(value: Any) -> tuple[str, ...]:
    """Apprise URLs (slack://..., ntfy://..., json://host/path), each checked by Apprise itself."""
    urls = tuple(_line_text(item) for item in _string_list(value))
    import apprise

    for index, url in enumerate(urls):
        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            scheme = url.split("://", 1)[0] if "://" in url else url[:20]
            raise ValueError(f"item {index + 1} ({scheme}://...) is not an Apprise URL it can use; see the Apprise wiki for the form of each service's URL")
    return urls


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("expected a mapping of header names to values")
    return {_no_controls(str(k)): _no_controls(str(v)) for k, v in value.items()}


# ----------------------------------------------------------------------------- field tables


@dataclass(frozen=True)
class FieldSpec:
    """One field a section accepts: the single source for validation and for help."""

    name: str
    takes: str
    help: str
    parse: Callable[[Any], Any]
    default: Any = UNSET
    required: bool = False


DEFAULTS_FIELDS = (
    FieldSpec("schedule", "interval or cron", "How often each target is checked.", parse_schedule, "6h"),
    FieldSpec("engine", "auto|http|browser", "How pages are fetched; auto tries plain HTTP first.", _choice(ENGINES), "auto"),
    FieldSpec("timeout", "duration", "Time allowed for one fetch.", parse_duration, "30s"),
    FieldSpec("user_agent", "string", "User-Agent header sent with every request.", _line_text, DEFAULT_USER_AGENT),
    FieldSpec("locale", "string", "Browser locale and Accept-Language.", _line_text, "en-US"),
    FieldSpec("concurrency", "number", "Fetches at once, over all targets.", _positive_int, 4),
    FieldSpec("retries", "number", "Extra attempts after a network error, 5xx or 429.", _count, 2),
    FieldSpec("confirm_delay", "duration", "Wait, then fetch again before recording a change (0s: off).", parse_duration, "30s"),
    FieldSpec("failure_threshold", "number", "Consecutive failures before a target counts as failing.", _positive_int, 3),
    FieldSpec("jitter", "fraction", "Random spread of run times, as a fraction of the interval (at most 15 minutes).", _fraction, 0.1),
    FieldSpec("host_concurrency", "number", "Fetches at once against one host.", _positive_int, 2),
    FieldSpec("host_delay", "duration", "Minimum pause between two requests to one host.", parse_duration, "1s"),
    FieldSpec("recycle_after", "number", "Restart the browser after this many fetches (bounds memory).", _positive_int, 200),
    FieldSpec("lang", "language code", "Language of the documents, when the page does not say.", _lang, "en"),
    FieldSpec("conditional", "true|false", "Send If-None-Match/If-Modified-Since from the last fetch; a 304 is an unchanged check.", _bool, True),
    FieldSpec("screenshot", "false|true|on-change", "Full-page screenshot kept with each new version: on-change, when the browser "
              "renders a page that differs from the last version's; true, also for pages fetched over HTTP (the browser is "
              "loaded for the picture); false, never. Unchanged checks keep none.", _screenshot, "on-change"),
)

STORAGE_FIELDS = (
    FieldSpec("db", "path", "SQLite database, relative to this file.", _string, "monitor.db"),
    FieldSpec("snapshots", "path", "Directory of raw captures and texts, relative to this file.", _string, "snapshots"),
)

# Fields a target may set itself; those also in DEFAULTS_FIELDS fall back to `defaults:`.
TARGET_FIELDS = (
    FieldSpec("id", "slug", "Unique id, used on the command line (linkedin-privacy).", _slug, required=True),
    FieldSpec("service", "string", "The platform (LinkedIn).", _line_text, required=True),
    FieldSpec("document", "kind", f"One of {', '.join(DOCUMENT_KINDS)}.", _choice(DOCUMENT_KINDS), required=True),
    FieldSpec("url", "URL", "The page to watch.", _url),
    FieldSpec("urls", "list of URLs", "Several pages combined, in order, into one document (instead of url).", _url_list),
    FieldSpec("select", "CSS or list", "Keep only these parts of the page.", _css_list),
    FieldSpec("remove", "CSS list", "Drop these parts (banners, menus) before extraction.", _css_list),
    FieldSpec("wait_for", "CSS", "In the browser, wait for this element before capturing.", _css),
    FieldSpec("engine", "auto|http|browser", "Overrides defaults.engine.", _choice(ENGINES)),
    FieldSpec("schedule", "interval or cron", "Overrides defaults.schedule.", parse_schedule),
    FieldSpec("lang", "language code", "Overrides defaults.lang.", _lang),
    FieldSpec("enabled", "true|false", "false keeps the target listed but never checked.", _bool, True),
    FieldSpec("tags", "list", "Free labels for filtering.", _string_list, ()),
    FieldSpec("timeout", "duration", "Overrides defaults.timeout.", parse_duration),
    FieldSpec("user_agent", "string", "Overrides defaults.user_agent.", _line_text),
    FieldSpec("locale", "string", "Overrides defaults.locale.", _line_text),
    FieldSpec("retries", "number", "Overrides defaults.retries.", _count),
    FieldSpec("confirm_delay", "duration", "Overrides defaults.confirm_delay.", parse_duration),
    FieldSpec("alerts_to", "list of emails", "Send this target's alerts here instead of alerts.to.", _email_list),
    FieldSpec("discover", "duration", "The daemon looks for new linked help pages this often (monitor discover) and reports them (alert kind discovered).", parse_duration),
    FieldSpec("screenshot", "false|true|on-change", "Overrides defaults.screenshot.", _screenshot),
)

SMTP_FIELDS = (
    FieldSpec("host", "host name", "SMTP server.", _line_text, required=True),
    FieldSpec("port", "number", "SMTP port (587 starttls, 465 ssl, 25 none).", _port),
    FieldSpec("security", "starttls|ssl|none", "How the connection is protected.", _choice(("starttls", "ssl", "none")), "starttls"),
    FieldSpec("username", "string", "Login, if the server needs one.", _line_text),
    FieldSpec("password_env", "env var name", "Environment variable holding the password.", _env_name),
    FieldSpec("timeout", "duration", "Connection timeout.", parse_duration, "30s"),
    FieldSpec("ca_file", "path", "Extra CA certificate to trust (self-signed servers).", _string),
)

WEBHOOK_FIELDS = (
    FieldSpec("url", "URL", "Where each change is POSTed as JSON.", _url, required=True),
    FieldSpec("headers", "mapping", "Extra HTTP headers (for a token, say).", _headers, {}),
    FieldSpec("timeout", "duration", "Request timeout.", parse_duration, "15s"),
)

ALERTS_FIELDS = (
    FieldSpec("smtp", "mapping", "Mail server settings.", lambda v: v),
    FieldSpec("from", "email", "Sender address.", _email),
    FieldSpec("to", "list of emails", "Recipients.", _email_list, ()),
    FieldSpec("min_severity", "low|medium|high", "Only flags at or above this count as flagged.", _choice(SEVERITIES), "low"),
    FieldSpec("only_flagged", "true|false", "Mail only changes with flags (default: every substantive change).", _bool, False),
    FieldSpec("mode", "immediate|digest", "One mail per change, or a digest on digest_schedule.", _choice(("immediate", "digest")), "immediate"),
    FieldSpec("digest_schedule", "cron", "When digests go out (mode: digest), in UTC.", parse_schedule, "0 8 * * *"),
    FieldSpec("webhook", "mapping", "POST each change as JSON to a URL.", lambda v: v),
    FieldSpec("subject_prefix", "string", "Start of every subject.", _line_text, "[privacy monitor]"),
    FieldSpec("report_url", "URL", "Where the HTML report is published; emails link to #change-ID there ({id} is replaced if present).", _url),
    FieldSpec("apprise", "list of URLs", "Chat and push channels through Apprise (slack://, msteams://, ntfy://, json://...), one message per change.", _apprise_urls, ()),
    FieldSpec("outage", "mapping", "When many targets fail alike at once, one alert instead of one per target.", lambda v: v),
)

OUTAGE_FIELDS = (
    FieldSpec("min_targets", "number", "At least this many targets failing with the same kind of error...", _positive_int, 5),
    FieldSpec("fraction", "fraction", "...and at least this share of the targets checked...", _fraction, 0.5),
    FieldSpec("window", "duration", "...within this time, is an outage (one alert, and one when it ends).", parse_duration, "10m"),
    FieldSpec("grace", "duration", "A target's own failing/recovered alert waits this long; an outage (or its end) declared meanwhile absorbs it. At most window.", parse_duration, "2m"),
)

FEEDS_FIELDS = (
    FieldSpec("dir", "path", "Directory of the Atom feeds (all.atom, service/*.atom, target/*.atom), relative to this file.", _string, "feeds"),
    FieldSpec("entries", "number", "Changes in each feed, newest first.", _positive_int, 50),
    FieldSpec("url", "URL", "Where that directory is published (for the feeds' self links).", _url),
)

def broker_url(value: Any) -> str:
    """A Celery broker: redis://, rediss://, amqp:// or amqps:// with a host."""
    text = _line_text(value)
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp") or not parts.hostname:
        raise ValueError(f"{text!r} is not a broker URL; write it like redis://localhost:6379/0 (or amqp://host for RabbitMQ)")
    return text


def redis_url(value: Any) -> str:
    text = broker_url(value)
    if urlsplit(text).scheme not in ("redis", "rediss"):
        raise ValueError(f"{text!r} is not a Redis URL; results and the shared host limiter need Redis, like redis://localhost:6379/1")
    return text


def _queue_name(value: Any) -> str:
    text = _string(value)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", text):
        raise ValueError(f"{text!r} is not a queue name; use letters, digits, '.', '_' or '-'")
    return text


DISTRIBUTED_FIELDS = (
    FieldSpec("broker", "URL", "Celery broker the fetch workers listen on (redis://host:6379/0; amqp:// for RabbitMQ).", broker_url, required=True),
    FieldSpec("results", "Redis URL", "Where workers put results, heartbeats and the shared host limiter [default: the broker, when Redis].", redis_url),
    FieldSpec("queue", "name", "Queue name prefix (the extractor version is appended, so a mixed fleet never mixes).", _queue_name, "monitor"),
    FieldSpec("max_pending", "number", "Checks sent to the workers at once; beyond it the daemon waits (back-pressure).", _positive_int, 64),
    FieldSpec("wait_for_workers", "duration", "How long `monitor check` waits for a live worker before failing.", parse_duration, "30s"),
)

EVIDENCE_FIELDS = (
    FieldSpec("signing_key", "path", "Ed25519 private key (PEM) that `monitor export --sign` signs bundles with, relative to this file; make one with `monitor keygen`.", _string),
    FieldSpec("tsa_url", "URL", "RFC 3161 time-stamping authority that `monitor export --timestamp` asks to timestamp the bundle's digest.", _url),
)

TOP_FIELDS = ("defaults", "storage", "alerts", "targets", "feeds", "distributed", "evidence")


def default_value(spec: FieldSpec) -> Any:
    """Defaults are written as a user would write them ('30s'); parse those that are text."""
    return spec.parse(spec.default) if isinstance(spec.default, str) else spec.default


# ----------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Target:
    """One document to watch, with every setting resolved (no UNSET left)."""

    id: str
    service: str
    document: str
    urls: tuple[str, ...]
    select: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    wait_for: str | None = None
    engine: str = "auto"
    schedule: Schedule = field(default_factory=lambda: parse_schedule("6h"))
    lang: str = "en"
    enabled: bool = True
    tags: tuple[str, ...] = ()
    timeout: float = 30.0
    user_agent: str = DEFAULT_USER_AGENT
    locale: str = "en-US"
    retries: int = 2
    confirm_delay: float = 30.0
    alerts_to: tuple[str, ...] = ()
    discover: float | None = None  # seconds between the daemon's discoveries (monitor/discover.py)
    screenshot: str = "on-change"  # false | true | on-change

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def title(self) -> str:
        """'LinkedIn · Privacy Policy', for people."""
        return f"{self.service} · {self.document.replace('-', ' ').title()}"


@dataclass(frozen=True)
class Defaults:
    schedule: Schedule
    engine: str
    timeout: float
    user_agent: str
    locale: str
    concurrency: int
    retries: int
    confirm_delay: float
    failure_threshold: int
    jitter: float
    host_concurrency: int
    host_delay: float
    recycle_after: int
    lang: str
    conditional: bool = True
    screenshot: str = "on-change"


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str
    username: str | None
    password_env: str | None
    timeout: float
    ca_file: Path | None


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    headers: dict[str, str]
    timeout: float


@dataclass(frozen=True)
class OutageConfig:
    min_targets: int = 5
    fraction: float = 0.5
    window: float = 600.0
    grace: float = 120.0  # a per-target failing/recovered alert is held this long (monitor.outage)


@dataclass(frozen=True)
class FeedsConfig:
    dir: Path
    entries: int = 50
    url: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    smtp: SmtpConfig | None = None
    sender: str | None = None
    to: tuple[str, ...] = ()
    min_severity: str = "low"
    only_flagged: bool = False
    mode: str = "immediate"
    digest_schedule: Schedule | None = None
    webhook: WebhookConfig | None = None
    subject_prefix: str = "[privacy monitor]"
    report_url: str | None = None
    apprise: tuple[str, ...] = ()
    outage: OutageConfig = field(default_factory=OutageConfig)

    @property
    def enabled(self) -> bool:
        return (self.smtp is not None and bool(self.to)) or self.webhook is not None or bool(self.apprise)


@dataclass(frozen=True)
class DistributedConfig:
    """`distributed:`: fetching runs on Celery workers; this process stays the one writer."""

    broker: str
    results: str | None = None
    queue: str = "monitor"
    max_pending: int = 64
    wait_for_workers: float = 30.0

    @property
    def results_url(self) -> str:
        """Results, heartbeats and the host limiter: `results`, else the broker (Redis)."""
        return self.results or self.broker


@dataclass(frozen=True)
class EvidenceConfig:
    """`evidence:`: how exported bundles are signed and timestamped (both optional)."""

    signing_key: Path | None = None
    tsa_url: str | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    defaults: Defaults
    db_path: Path
    snapshots_dir: Path
    alerts: AlertsConfig
    targets: tuple[Target, ...]
    feeds: FeedsConfig | None = None
    distributed: DistributedConfig | None = None  # None: one process, nothing distributed loaded
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)

    def target(self, target_id: str) -> Target:
        for target in self.targets:
            if target.id == target_id:
                return target
        known = [t.id for t in self.targets]
        hint = difflib.get_close_matches(target_id, known, n=1)
        listed = ", ".join(known) if len(known) <= 50 else ", ".join(known[:50]) + f", … ({len(known)} in all; `monitor status` lists them)"
        extra = f"; did you mean {hint[0]!r}?" if hint else f"; known ids: {listed}" if known else ""
        raise ConfigError([Problem(str(self.path), None, "targets", f"no target with id {target_id!r}{extra}")])

    @property
    def enabled_targets(self) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.enabled)


# ----------------------------------------------------------------------------- YAML with lines


class _LineDict(dict):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's parser when present (several times faster on a long targets.yaml)."""


class _ExplainingLoader(yaml.SafeLoader):
    """The pure-Python parser, whose wording explains a YAML error (read again on one)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    mapping = _LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines.setdefault(key, key_node.start_mark.line + 1)
    return mapping


for _loader in (_LineLoader, _ExplainingLoader):
    _loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line(mapping: Any, key: Any = None) -> int | None:
    if isinstance(mapping, _LineDict):
        if key is not None and key in mapping.key_lines:
            return mapping.key_lines[key]
        return mapping.line
    return None


# ----------------------------------------------------------------------------- loading


class _Checker:
    """Collects problems while walking the file, so all of them are reported at once."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, where: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, where, message))

    def section(self, raw: Any, where: str, specs: tuple[FieldSpec, ...], *, fill_defaults: bool = True) -> dict[str, Any]:
        """Parse one mapping against its field table; unknown keys get a did-you-mean."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.add(_line(raw), where, "expected a mapping of fields (key: value)")
            return {}
        names = [spec.name for spec in specs]
        for key in raw:
            if key not in names:
                hint = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                fix = f"did you mean {hint[0]!r}?" if hint else f"allowed fields: {', '.join(names)}"
                self.add(_line(raw, key), f"{where}.{key}", f"unknown field; {fix}")
        values: dict[str, Any] = {}
        for spec in specs:
            if spec.name in raw:
                value = raw[spec.name]
                try:
                    values[spec.name] = spec.parse(value)
                except ValueError as exc:
                    self.add(_line(raw, spec.name), f"{where}.{spec.name}", str(exc))
            elif spec.required:
                self.add(_line(raw), where, f"missing required field {spec.name!r} ({spec.help})")
            elif fill_defaults and spec.default is not UNSET:
                values[spec.name] = default_value(spec)
            else:
                values[spec.name] = UNSET
        return values


def resolve_config_path(path: str | os.PathLike[str] | None) -> Path:
    """--config, else $MONITOR_CONFIG, else ./targets.yaml."""
    chosen = path or os.environ.get("MONITOR_CONFIG") or DEFAULT_CONFIG
    return Path(chosen).expanduser()


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate targets.yaml. Raises ConfigError listing every problem."""
    config_path = resolve_config_path(path)
    name = str(config_path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(name, None, "file", "not found; pass --config PATH, set MONITOR_CONFIG, or run from the directory holding targets.yaml")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(name, None, "file", f"cannot be read ({exc.__class__.__name__}: {exc})")]) from None
    return parse_config(text, config_path)


def parse_config(text: str, config_path: Path) -> Config:
    name = str(config_path)
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader is a SafeLoader
    except yaml.YAMLError:
        try:  # again with the pure-Python parser: the error in its words (or its reading)
            raw = yaml.load(text, Loader=_ExplainingLoader)  # noqa: S506 - a SafeLoader
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError([Problem(name, line, "yaml", f"not valid YAML: {problem}; check indentation and quoting")]) from None
    check = _Checker(name)
    if raw is None:
        raw = _LineDict()
        raw.key_lines = {}
    if not isinstance(raw, dict):
        raise ConfigError([Problem(name, 1, "file", "expected a mapping with defaults:, storage:, alerts: and targets:")])
    for key in raw:
        if key not in TOP_FIELDS:
            hint = difflib.get_close_matches(str(key), TOP_FIELDS, n=1, cutoff=0.6)
            fix = f"did you mean {hint[0]!r}?" if hint else f"allowed sections: {', '.join(TOP_FIELDS)}"
            check.add(_line(raw, key), str(key), f"unknown section; {fix}")

    d = check.section(raw.get("defaults"), "defaults", DEFAULTS_FIELDS)
    defaults = Defaults(**{spec.name: d.get(spec.name, default_value(spec)) for spec in DEFAULTS_FIELDS})

    s = check.section(raw.get("storage"), "storage", STORAGE_FIELDS)
    base = config_path.parent
    db_path = (base / str(s.get("db", "monitor.db"))).resolve()
    snapshots_dir = (base / str(s.get("snapshots", "snapshots"))).resolve()

    alerts = _alerts(check, raw.get("alerts"), base)
    targets = _targets(check, raw, defaults)
    feeds = None
    if "feeds" in raw:
        f = check.section(raw.get("feeds"), "feeds", FEEDS_FIELDS)
        feeds = FeedsConfig((base / str(f.get("dir", "feeds"))).resolve(), f.get("entries", 50), None if f.get("url", UNSET) is UNSET else f["url"])
    distributed = _distributed(check, raw) if "distributed" in raw else None
    evidence = EvidenceConfig()
    if "evidence" in raw:
        e = check.section(raw.get("evidence"), "evidence", EVIDENCE_FIELDS)
        key, tsa = e.get("signing_key", UNSET), e.get("tsa_url", UNSET)
        evidence = EvidenceConfig(None if key is UNSET else (base / key).resolve(), None if tsa is UNSET else tsa)
    if check.problems:
        raise ConfigError(check.problems)
    return Config(config_path.resolve(), defaults, db_path, snapshots_dir, alerts, targets, feeds=feeds, distributed=distributed, evidence=evidence)


def _distributed(check: _Checker, raw: dict[str, Any]) -> DistributedConfig | None:
    values = check.section(raw.get("distributed"), "distributed", DISTRIBUTED_FIELDS)
    broker = values.get("broker", UNSET)
    if broker is UNSET:
        return None  # the problem is recorded
    results = values.get("results", UNSET)
    if results is UNSET and urlsplit(broker).scheme not in ("redis", "rediss"):
        check.add(_line(raw, "distributed"), "distributed.results", "the broker is not Redis; add results: redis://host:6379/1 (results, heartbeats and the host limiter live there)")
        return None
    return DistributedConfig(
        broker=broker, results=None if results is UNSET else results, queue=values.get("queue", "monitor"),
        max_pending=values.get("max_pending", 64), wait_for_workers=values.get("wait_for_workers", 30.0),
    )


def _targets(check: _Checker, raw: dict[str, Any], defaults: Defaults) -> tuple[Target, ...]:
    items = raw.get("targets")
    if items is None:
        check.add(_line(raw), "targets", "missing; add a targets: list with at least one target (see the README)")
        return ()
    if not isinstance(items, list):
        check.add(_line(raw, "targets"), "targets", "expected a list of targets, each starting with '- id: ...'")
        return ()
    targets: list[Target] = []
    seen: dict[str, int | None] = {}
    for index, item in enumerate(items):
        where = f"targets[{index}]"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            where = f"targets[{item['id']}]"
        values = check.section(item, where, TARGET_FIELDS, fill_defaults=True)
        if not isinstance(item, dict):
            continue
        line = _line(item)
        target_id = values.get("id")
        if isinstance(target_id, str):
            if target_id in seen:
                check.add(_line(item, "id"), f"{where}.id", f"duplicate id (first used on line {seen[target_id]}); ids must be unique")
            else:
                seen[target_id] = _line(item, "id")
        if "url" in item and "urls" in item:
            check.add(line, where, "set either url or urls, not both")
        elif "url" not in item and "urls" not in item:
            check.add(line, where, "missing url (or urls: for a document spread over several pages)")
        url = values.get("url", UNSET)
        urls = (url,) if url is not UNSET else values.get("urls", UNSET)
        if urls is UNSET or any(values.get(k, UNSET) is UNSET for k in ("id", "service", "document")):
            continue  # the problem is already recorded; nothing to build
        resolved: dict[str, Any] = {}
        for spec in TARGET_FIELDS:
            if spec.name in ("url", "urls"):
                continue
            value = values.get(spec.name, UNSET)
            if value is UNSET and hasattr(defaults, spec.name):
                value = getattr(defaults, spec.name)
            if value is UNSET:
                value = default_value(spec) if spec.default is not UNSET else None
            resolved[spec.name] = value
        resolved["alerts_to"] = resolved["alerts_to"] or ()
        resolved["select"] = resolved["select"] or ()
        resolved["remove"] = resolved["remove"] or ()
        targets.append(Target(urls=tuple(urls), **resolved))
    return tuple(targets)


def _alerts(check: _Checker, raw: Any, base: Path) -> AlertsConfig:
    if raw is None:
        return AlertsConfig()
    a = check.section(raw, "alerts", ALERTS_FIELDS)
    smtp = webhook = None
    if isinstance(raw, dict) and "smtp" in raw:
        s = check.section(raw["smtp"], "alerts.smtp", SMTP_FIELDS)
        if s.get("host") not in (None, UNSET):
            security = s.get("security", "starttls")
            port = s.get("port", UNSET)
            if port is UNSET:
                port = {"starttls": 587, "ssl": 465, "none": 25}[security]
            ca = s.get("ca_file", UNSET)
            smtp = SmtpConfig(
                host=s["host"],
                port=port,
                security=security,
                username=None if s.get("username", UNSET) is UNSET else s["username"],
                password_env=None if s.get("password_env", UNSET) is UNSET else s["password_env"],
                timeout=s.get("timeout", 30.0),
                ca_file=None if ca is UNSET else (base / ca).resolve(),
            )
            if smtp.username and not smtp.password_env:
                check.add(_line(raw["smtp"]), "alerts.smtp.password_env", "username is set but password_env is not; name the environment variable that holds the password")
    if isinstance(raw, dict) and "webhook" in raw:
        w = check.section(raw["webhook"], "alerts.webhook", WEBHOOK_FIELDS)
        if w.get("url") not in (None, UNSET):
            webhook = WebhookConfig(url=w["url"], headers=w.get("headers", {}), timeout=w.get("timeout", 15.0))
    sender = a.get("from", UNSET)
    to = a.get("to", ())
    if smtp and not to and "to" not in raw:
        check.add(_line(raw), "alerts.to", "smtp is configured but no recipients; add to: [you@example.org]")
    if smtp and sender is UNSET and "from" not in raw:
        check.add(_line(raw), "alerts.from", "smtp is configured but no sender; add from: monitor@example.org")
    if isinstance(raw, dict) and raw.get("mode") == "digest" and "digest_schedule" in raw:
        schedule = a.get("digest_schedule")
        if isinstance(schedule, Schedule) and schedule.cron is None:
            check.add(_line(raw, "digest_schedule"), "alerts.digest_schedule", "expected a cron string such as '0 8 * * *'")
    outage = OutageConfig()
    if isinstance(raw, dict) and "outage" in raw:
        o = check.section(raw["outage"], "alerts.outage", OUTAGE_FIELDS)
        outage = OutageConfig(**{k: v for k, v in o.items() if v is not UNSET})
        if outage.grace > outage.window:
            check.add(_line(raw["outage"], "grace"), "alerts.outage.grace",
                      f"{format_duration(outage.grace)} is longer than window ({format_duration(outage.window)}); use at most the window, e.g. grace: 2m")
            outage = replace(outage, grace=outage.window)
    return AlertsConfig(
        apprise=a.get("apprise", ()),
        outage=outage,
        smtp=smtp,
        sender=None if sender is UNSET else sender,
        to=tuple(to) if to is not UNSET else (),
        min_severity=a.get("min_severity", "low"),
        only_flagged=a.get("only_flagged", False),
        mode=a.get("mode", "immediate"),
        digest_schedule=a.get("digest_schedule"),
        webhook=webhook,
        subject_prefix=a.get("subject_prefix", "[privacy monitor]"),
        report_url=None if a.get("report_url", UNSET) in (UNSET, None) else a["report_url"],
    )


def field_reference() -> str:
    """The field tables as text, for `monitor validate --fields` and the README."""
    out: list[str] = []
    for title, specs in (
        ("defaults:", DEFAULTS_FIELDS),
        ("storage:", STORAGE_FIELDS),
        ("targets: (each item)", TARGET_FIELDS),
        ("alerts:", ALERTS_FIELDS),
        ("alerts.smtp:", SMTP_FIELDS),
        ("alerts.webhook:", WEBHOOK_FIELDS),
        ("alerts.outage:", OUTAGE_FIELDS),
        ("feeds:", FEEDS_FIELDS),
        ("distributed:", DISTRIBUTED_FIELDS),
        ("evidence:", EVIDENCE_FIELDS),
    ):
        out.append(title)
        for spec in specs:
            shown = spec.default
            if isinstance(shown, bool):
                shown = str(shown).lower()
            elif isinstance(shown, (tuple, list)):
                shown = "[" + ", ".join(map(str, shown)) + "]"
            default = "" if spec.default is UNSET else f" [default: {shown}]"
            if spec.required:
                default = " [required]"
            if spec.name == "user_agent" and spec.default is not UNSET:
                default = " [default: a desktop Chrome UA + privacy-monitor]"
            out.append(f"  {spec.name:<18} {spec.takes:<18} {spec.help}{default}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
