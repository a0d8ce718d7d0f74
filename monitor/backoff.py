"""The one backoff helper: how long to wait before the next try of anything that failed.

Alert retries, the daemon's heartbeat (and, as their owners move to it, fetch retries and
importers) wait by this rule, each with its own base and ceiling, so that every retry in the
project doubles, is capped, and is spread out the same way.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff(attempt: int, *, base: float, cap: float, spread: float = 0.2, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after `attempt` failed tries (1 for the first): `base` doubling each
    time, at most `cap`, spread by plus or minus `spread` so that many waiters do not come
    back at the same instant."""
    delay = min(base * 2 ** max(attempt - 1, 0), cap)
    return min(delay * (1 - spread + 2 * spread * rand()), cap)
