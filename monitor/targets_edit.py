"""Edits of targets.yaml from the command line (`monitor add`, `remove`, `discover --add`).

The file is a document people curate: comments explain choices, entries are grouped and
spaced. Edits go through ruamel.yaml's round-trip mode with the file's own indentation, and
are then checked line by line: only the lines of the entry being added, disabled or deleted
may differ, or nothing is written. The new text must pass the same validation as `monitor
validate` before it replaces the file (atomically), so an edit can never leave a file the
daemon would refuse.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .files import write_atomic
from .targets import Config, parse_config


class EditError(InputError):
    """targets.yaml could not be edited safely; the message says what to do by hand."""


@dataclass(frozen=True)
class Edit:
    """A proposed new text for the file, with what it changes (shown before asking)."""

    path: Path
    old: str
    new: str
    config: Config  # the new text, validated

    def diff(self) -> str:
        lines = difflib.unified_diff(self.old.splitlines(True), self.new.splitlines(True), str(self.path), str(self.path), n=1)
        return "".join(lines)

    def write(self) -> None:
        """Replace the file atomically, keeping its permissions (files.write_atomic)."""
        write_atomic(self.path, self.new.encode("utf-8"), mode=self.path.stat().st_mode & 0o777)


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round-trip: comments, key order, quoting and flow style kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a long line
    mapping, sequence, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _indentation(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file writes them: ruamel's own
    guess looks at the first nested block only and re-indents everything else."""
    mapping = 2
    for match in re.finditer(r"^[A-Za-z_]\w*:\s*(?:#.*)?\n(?:\s*(?:#.*)?\n)*( +)[A-Za-z_]", text, re.M):
        mapping = len(match.group(1))
        break
    offset = 0
    found = re.search(r"^targets:\s*(?:#.*)?\n(?:\s*(?:#.*)?\n)*( *)- ", text, re.M)
    if found:
        offset = len(found.group(1))
    return mapping, offset + 2, offset


def _load(path: Path) -> tuple[str, Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EditError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    parse_config(text, path)  # a file that does not validate is not edited: fix it first
    yaml = _yaml(text)
    data = yaml.load(text)
    if not isinstance(data, Mapping) or not isinstance(data.get("targets"), list):
        raise EditError(f"{path}: targets: is not a list; fix the file first (`monitor validate`)")
    return text, yaml, data


def _dump(yaml: Any, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _index(data: Any, path: Path, target_id: str) -> int:
    for index, item in enumerate(data["targets"]):
        if isinstance(item, Mapping) and str(item.get("id")) == target_id:
            return index
    ids = [str(item.get("id")) for item in data["targets"] if isinstance(item, Mapping)]
    hint = difflib.get_close_matches(target_id, ids, n=1)
    extra = f"; did you mean {hint[0]!r}?" if hint else ""
    raise EditError(f"{path}: no target with id {target_id!r}{extra}")


def _checked(path: Path, old: str, new: str, allowed: range | None) -> Edit:
    """The edit, if it touches no line outside `allowed` (old line numbers, 0-based; None:
    only insertions) and the new text validates."""
    matcher = difflib.SequenceMatcher(a=old.splitlines(), b=new.splitlines(), autojunk=False)
    for op, i1, i2, _j1, _j2 in matcher.get_opcodes():
        if op == "equal" or (op == "insert" and (allowed is None or allowed.start <= i1 <= allowed.stop)):
            continue
        if allowed is not None and allowed.start <= i1 and i2 <= allowed.stop:
            continue
        raise EditError(
            f"{path}: editing would reformat line {i1 + 1} ({old.splitlines()[i1].strip()[:60]!r}); nothing was written; make this edit by hand"
        )
    config = parse_config(new, path)  # ConfigError: the edit would not validate; nothing written
    return Edit(path, old, new, config)


def _entry(values: Mapping[str, Any]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    entry = CommentedMap()
    for key, value in values.items():
        if value is None or value == () or value == []:
            continue
        if isinstance(value, (list, tuple)):
            seq = CommentedSeq(list(value))
            seq.fa.set_flow_style()  # tags: [a, b], as the file writes them
            value = seq
        entry[key] = value
    return entry


def _spaced(old: str, new: str) -> str:
    """A blank line before each appended entry when the file separates its entries so."""
    if "\n\n" not in old.split("targets:", 1)[-1]:
        return new
    lines = new.splitlines(True)
    old_lines = old.splitlines(True)
    matcher = difflib.SequenceMatcher(a=old_lines, b=lines, autojunk=False)
    out: list[str] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "insert" and out and out[-1].strip():
            out.append("\n")
        out.extend(lines[j1:j2] if op != "delete" else [])
    return "".join(out)


def add_targets(path: Path, entries: Sequence[Mapping[str, Any]], *, note: str | None = None) -> Edit:
    """Append targets (mappings of targets.yaml fields) at the end of `targets:`."""
    old, yaml, data = _load(path)
    items = data["targets"]
    for values in entries:
        items.append(_entry(values))
        if note:
            indent = _indentation(old)[2]
            items.yaml_set_comment_before_after_key(len(items) - 1, before=note, indent=indent)
    new = _spaced(old, _dump(yaml, data))
    return _checked(path, old, new, None)


def _lines_of(data: Any, index: int, old: str) -> range:
    """Old line numbers (0-based) of the entry at `index`: from its first line to the line
    before the next entry (or the end of the list)."""
    items = data["targets"]
    start = items.lc.item(index)[0]
    if index + 1 < len(items):
        stop = items.lc.item(index + 1)[0]
    else:
        stop = len(old.splitlines())
        for line_no in range(start + 1, stop):  # the next top-level key ends the list
            line = old.splitlines()[line_no]
            if line and not line[0].isspace() and not line.startswith(("#", "-")):
                stop = line_no
                break
    return range(start, stop)


def disable_target(path: Path, target_id: str) -> Edit:
    """Set `enabled: false` on one target (its history stays; it is no longer checked)."""
    old, yaml, data = _load(path)
    index = _index(data, path, target_id)
    item = data["targets"][index]
    if item.get("enabled") is False:
        raise EditError(f"{path}: target {target_id!r} is already disabled (enabled: false); use --delete to remove the entry")
    if "enabled" in item:
        item["enabled"] = False
    else:
        keys = list(item.keys())
        item.insert(keys.index("document") + 1 if "document" in keys else len(keys), "enabled", False)
    return _checked(path, old, _dump(yaml, data), _lines_of(data, index, old))


def delete_target(path: Path, target_id: str) -> Edit:
    """Remove one target's entry from the file (its stored history is not touched here)."""
    old, yaml, data = _load(path)
    index = _index(data, path, target_id)
    lines = _lines_of(data, index, old)
    if len(data["targets"]) == 1:
        raise EditError(f"{path}: {target_id!r} is the only target; a targets.yaml needs at least one (disable it instead)")
    # Text, not the YAML tree: ruamel keeps the comments and blank line that follow an item
    # on that item, so deleting the node would take the next entry's heading comment with it.
    old_lines = old.splitlines(True)
    last = max(n for n in lines if old_lines[n].strip() and not old_lines[n].lstrip().startswith("#"))
    end = last + 1
    while end < lines.stop and not old_lines[end].strip():
        end += 1
    new = "".join(old_lines[: lines.start] + old_lines[end:])
    return _checked(path, old, new, range(max(0, lines.start - 1), lines.stop))  # difflib may take the blank line before
