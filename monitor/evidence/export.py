"""`monitor export`: select, check against the chain, build, write (one file, atomically)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import SUFFIXES
from .collect import chain_part, select
from .items import Built, build
from .write import Signer, write_plain_warc, write_wacz, write_zip

if TYPE_CHECKING:
    from ..store import Store


@dataclass
class Exported:
    path: Path
    built: Built
    signer_key: Any = None
    stamp: dict[str, Any] | None = None

    @property
    def signature(self) -> str | None:
        """What the CLI says about the signature and time-stamp, if any."""
        if self.signer_key is None:
            return None
        from .sign import _spki, fingerprint

        line = f"signed by {fingerprint(_spki(self.signer_key.public_key()))}"
        if self.stamp:
            line += f"; time-stamped by {self.stamp['tsa']} at {self.stamp['genTime']}"
        return line

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


def make_signer(key: Any, *, created: str, tsa_url: str | None = None, stamps: list[dict[str, Any]] | None = None) -> Signer:
    """The function that signs a bundle's digest (and has it time-stamped by `tsa_url`)."""
    from .sign import signed_data
    from .timestamp import timestamp
    from .write import warc_date

    def signer(digest: str) -> dict[str, Any]:
        block = signed_data(key, digest, warc_date(created), software())
        if tsa_url:
            block.update(timestamp(tsa_url, digest).block())
            if stamps is not None:
                stamps.append(block)
        return block

    return signer


def export(store: Store, spec: str | None, *, fmt: str = "wacz", output: Path | None = None, everything: bool = False,
           since: str | None = None, until: str | None = None, now: str | None = None, signing_key: Any = None,
           tsa_url: str | None = None) -> Exported:
    """`signing_key`: an Ed25519 private key (sign.load_private) to sign the bundle with;
    `tsa_url`: also have the signed digest time-stamped there (RFC 3161)."""
    from ..records import utcnow

    selection = select(store, spec, everything=everything, since=since, until=until)
    exported_at = now or utcnow()
    built = build(store, selection, chain_part(store, selection), exported_at=exported_at, software=software())
    path = Path(output) if output else Path(selection.name + SUFFIXES[fmt])
    stamps: list[dict[str, Any]] = []
    signer = make_signer(signing_key, created=exported_at, tsa_url=tsa_url, stamps=stamps) if signing_key is not None else None
    if fmt == "wacz":
        write_wacz(path, built, software=software(), signer=signer)
    elif fmt == "warc":
        write_plain_warc(path, built, software=software(), signer=signer)
    else:
        write_zip(path, built, software=software(), signer=signer)
    return Exported(path, built, signer_key=signing_key, stamp=stamps[0] if stamps else None)
