"""Anchors: the chain head with its time, written where the database's holder cannot reach
(a published log, an email, a timestamping service), so a rewrite of the archive shows.

An anchor line is `TIME  N:SHA256  store STORE_ID`; `monitor anchor --to FILE` appends one,
and `monitor verify --anchor FILE` reads every `N:SHA256` in FILE (any text around them is
ignored, so an alert's X-Monitor-Chain header pasted in works too) and checks that the
archive, or a bundle, still extends each.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import InputError

HEAD = re.compile(r"\b(\d+):([0-9a-f]{64})\b")


def anchor_line(head: str, when: str, store_id: str | None) -> str:
    return f"{when}  {head}  store {store_id or 'unknown'}"


def append_anchor(path: Path, line: str) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_anchors(path: Path) -> list[tuple[str, str]]:
    """(where, 'N:hash') for every head in the file: where is 'FILE:LINE'."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"--anchor {path}: cannot be read ({exc.strerror or exc})") from None
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in HEAD.finditer(line):
            found.append((f"anchor {path.name}:{number}", f"{match.group(1)}:{match.group(2)}"))
    if not found:
        raise InputError(f"--anchor {path}: no chain head (N:SHA256) in it; write one with `monitor anchor --to {path}`")
    return found
