"""Which site a URL belongs to (a fetch may not leave its site), and the Retry-After a
server asks for."""

from __future__ import annotations

import ipaddress
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from ..errors import FetchError
from ..extract import load_data


def site_of(url: str) -> str:
    """The site a URL belongs to: its registrable domain, approximately (the last two labels
    of the host; three under a second-level suffix such as co.uk, or under a shared hosting
    suffix such as github.io, both listed in monitor/data/sites.yaml). An IP address or a
    single-label host is its own site. Scheme and port do not matter."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    if len(labels) <= 2:
        return host
    data = load_data("sites.yaml")
    tail2, tail3 = ".".join(labels[-2:]), ".".join(labels[-3:])
    if tail3 in data["shared_suffixes"] and len(labels) > 3:
        return ".".join(labels[-4:])
    if tail2 in data["shared_suffixes"] or (len(labels[-1]) == 2 and labels[-2] in data["second_level"]):
        return tail3
    return tail2


def same_site(url: str, other: str) -> bool:
    return site_of(url) == site_of(other)


def _left_site(url: str, final: str, status: int | None) -> FetchError:
    return FetchError("navigated-away", f"{url} ended on {final}, another site; not recorded", url=url, status=status)


def retry_after(headers: dict[str, str]) -> float | None:
    """Retry-After in seconds (either form the RFC allows)."""
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
