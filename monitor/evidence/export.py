"""`monitor export`: select, check against the chain, build, write (one file, atomically)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import SUFFIXES
from .collect import chain_part, select
from .items import Built, build
from .write import write_plain_warc, write_wacz, write_zip

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class Exported:
    path: Path
    built: Built

    @property
    def counts(self) -> str:
        ev = self.built.evidence
        kinds: dict[str, int] = {}
        for item in self.built.items:
            kinds[item.rec_type] = kinds.get(item.rec_type, 0) + 1
        records = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        return f"{len(ev['versions'])} versions, {len(ev['changes'])} changes ({records}, 1 metadata); chain head {ev['chain']['head']}"


def software() -> str:
    from .. import __version__

    return f"privacy-monitor {__version__}"


def export(store: Store, spec: str | None, *, fmt: str = "wacz", output: Path | None = None, everything: bool = False,
           since: str | None = None, until: str | None = None, now: str | None = None) -> Exported:
    from ..records import utcnow

    selection = select(store, spec, everything=everything, since=since, until=until)
    built = build(store, selection, chain_part(store, selection), exported_at=now or utcnow(), software=software())
    path = Path(output) if output else Path(selection.name + SUFFIXES[fmt])
    if fmt == "wacz":
        write_wacz(path, built, software=software())
    elif fmt == "warc":
        write_plain_warc(path, built, software=software())
    else:
        write_zip(path, built, software=software())
    return Exported(path, built)
