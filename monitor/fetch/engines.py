"""The engine registry: an engine registers itself by name (`@engine("http")`), the name a
target's `engine` field uses; a `Fetcher` makes one of each on first use. The engines are
in http.py and browser.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .model import NO_SHOTS, Page, ShotPolicy, Validators

if TYPE_CHECKING:
    from ..targets import Target
    from .capture import Fetcher


ENGINES: dict[str, type[Engine]] = {}


def engine(name: str) -> Callable[[type[Engine]], type[Engine]]:
    """Register a fetch engine under a name usable in targets.yaml."""

    def register(cls: type[Engine]) -> type[Engine]:
        cls.name = name
        ENGINES[name] = cls
        return cls

    return register


class Engine:
    name = "base"

    def __init__(self, fetcher: Fetcher):
        self.fetcher = fetcher

    async def get(self, url: str, target: Target, validators: Validators | None = None, shots: ShotPolicy = NO_SHOTS) -> Page:
        """One page; engines that cannot make conditional requests ignore `validators`, and
        engines that render nothing ignore `shots`."""
        raise NotImplementedError

    async def close(self) -> None:
        return None
