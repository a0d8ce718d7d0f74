"""The pieces of a bundle, format-neutral: each becomes one WARC record (WACZ, WARC) or one
file (zip). evidence.json maps every fact to its piece by WARC-Record-ID and by zip path.

Record types, as the issue and WARC (ISO 28500) mean them:
- `response` (+ its `request`): a network response this monitor received, headers and body,
  WARC-Date the time of the request. Only live captures that kept their exchange have one.
- `resource`: everything else: the rendered DOM of a browser capture, a capture whose
  headers were not kept (versions stored before they were), a version imported from the
  Wayback Machine or Open Terms Archive (at its original URL, dated with the archive's
  claimed time, its provenance in WARC-Monitor-Provenance: never a response of ours),
  extracted texts, screenshots, diffs.
- `metadata`: evidence.json.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..records import sha256_bytes

if TYPE_CHECKING:
    from ..store import Store
    from .collect import Selection

# Headers that describe a transfer the stored body no longer has (it is kept decoded): left
# out of the response record, named in WARC-Monitor-Decoded, kept as received in the headers file.
_TRANSFER_HEADERS = ("content-encoding", "transfer-encoding", "content-length")
_EXT = {"text/html": "html", "application/pdf": "pdf", "text/markdown": "md", "text/plain": "txt", "image/webp": "webp",
        "image/jpeg": "jpg", "image/png": "png", "application/json": "json"}


@dataclass
class Item:
    role: str  # capture, response, request, http, text, screenshot, diff-json, diff-html, clauses-html, evaluation-json
    rec_type: str  # WARC-Type
    uri: str  # WARC-Target-URI
    date: str  # store timestamp (ISO 8601, Z)
    content_type: str
    payload: bytes
    path: str  # in a zip bundle; "" for pieces only a WARC holds (requests)
    status_line: str | None = None  # response/request: "200 OK" / "GET /path HTTP/1.1"
    protocol: str = "HTTP/1.1"
    http_headers: list[tuple[str, str]] | None = None
    warc_headers: dict[str, str] = field(default_factory=dict)
    record_id: str = field(default_factory=lambda: f"<urn:uuid:{uuid.uuid4()}>")
    page_title: str | None = None  # listed in pages.jsonl when set

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.payload)

    def ref(self, part: int | None = None, tile: int | None = None) -> dict[str, Any]:
        """This piece as evidence.json names it."""
        out: dict[str, Any] = {"role": self.role, "id": self.record_id, "path": self.path or None, "uri": self.uri, "sha256": self.sha256}
        if part is not None:
            out["part"] = part
        if tile is not None:
            out["tile"] = tile
        return out


@dataclass
class Built:
    items: list[Item]
    evidence: dict[str, Any]


def build(store: Store, selection: Selection, chain_part: dict[str, Any], *, exported_at: str, software: str) -> Built:
    """Every piece of the bundle and the evidence.json that maps them."""
    from ..report import change_entry, entry_title, render_diff_html

    items: list[Item] = []
    versions_out = []
    by_id = {row["id"]: row for row in selection.versions}
    for row in selection.versions:
        target = selection.targets[row["target_id"]]
        made, entry = _version_items(store, row, selection.fetches.get(row["id"]), target)
        entry["chain"] = selection.entries[("version", row["id"])]["position"]
        items += made
        versions_out.append(entry)
    changes_out = []
    evaluations = {}
    for ev in selection.evaluations:
        evaluations.setdefault(ev["change_id"], []).append(ev)
    for row in selection.changes:
        target = selection.targets[row["target_id"]]
        old, new = by_id[row["old_version_id"]], by_id[row["new_version_id"]]
        ref = f"change {row['id']}"
        base = f"changes/{row['id']}"
        when = row["detected_at"]
        files = []
        diff_json = Item("diff-json", "resource", f"urn:monitor:change:{row['id']}/diff.json", when, "application/json",
                         row["diff"].encode("utf-8"), f"{base}/diff.json")
        items.append(diff_json)
        files.append(diff_json.ref())
        if row["html"] is not None:
            clauses = Item("clauses-html", "resource", f"urn:monitor:change:{row['id']}/clauses.html", when, "text/html; charset=utf-8",
                           row["html"].encode("utf-8"), f"{base}/clauses.html")
            items.append(clauses)
            files.append(clauses.ref())
        latest = evaluations.get(row["id"], [])
        shown = json.loads((latest[-1] if latest else row)["diff"])
        display = {**row, "service": target.get("service"), "document": target.get("document"), "url": target.get("url"),
                   "provenance": new["provenance"], "diff": json.dumps(shown)}
        entry = change_entry(display)
        title = (f"#{row['id']} {entry_title(entry)} v{row['old_seq']}→v{row['new_seq']} "
                 f"detected {row['detected_at'][:16].replace('T', ' ')}")
        page = Item("diff-html", "resource", f"urn:monitor:change:{row['id']}/diff.html", when, "text/html; charset=utf-8",
                    render_diff_html(entry, title=title).encode("utf-8"), f"{base}/diff.html")
        items.append(page)
        files.append(page.ref())
        eval_refs = []
        for ev in latest:
            item = Item("evaluation-json", "resource", f"urn:monitor:evaluation:{ev['id']}/diff.json", ev["evaluated_at"],
                        "application/json", ev["diff"].encode("utf-8"), f"{base}/evaluation-{ev['id']}.json")
            items.append(item)
            eval_refs.append({"id": ev["id"], "evaluated_at": ev["evaluated_at"], "rules": ev["rules"],
                              "chain": selection.entries[("evaluation", ev["id"])]["position"], "files": [item.ref()]})
        changes_out.append({
            "id": row["id"], "ref": ref, "target": row["target_id"], "old": f"{old['target_id']}@{old['seq']}",
            "new": f"{new['target_id']}@{new['seq']}", "detected_at": row["detected_at"], "observed_at": row["observed_at"],
            "old_effective_date": old["effective_date"], "new_effective_date": new["effective_date"],
            "summary": (latest[-1] if latest else row)["summary"], "flags": flags_of(shown),
            "evaluated": bool(latest), "chain": selection.entries[("change", row["id"])]["position"],
            "files": files, "evaluations": eval_refs,
        })
    evidence = {
        "format": "privacy-monitor-evidence/1",
        "exported_at": exported_at,
        "software": software,
        "store_id": store.get_meta("store_id"),
        "selection": selection.label,
        "targets": [{k: t.get(k) for k in ("id", "service", "document", "url")} for t in selection.targets.values()],
        "versions": versions_out,
        "changes": changes_out,
        "chain": chain_part,
        "notes": [
            "Each version's and change's facts are those of its hash-chain entry (chain.entries, record);"
            " every file named here must have the sha256 that entry records.",
            "Bodies are kept decoded: a response record leaves out the Content-Encoding, Transfer-Encoding and"
            " Content-Length it was sent with (named in WARC-Monitor-Decoded); the headers file keeps them as received.",
            "Request records and diff.html are rebuilt at export from the headers file and the diff JSON; the chain covers their sources.",
        ],
    }
    return Built(items, evidence)


def flags_of(diff: dict[str, Any]) -> list[dict[str, Any]]:
    """The flags of a diff JSON, as evidence.json lists them (and verify recomputes them)."""
    out = []
    for change in diff.get("changes") or []:
        for flag in change.get("flags") or []:
            out.append({k: flag.get(k) for k in ("category", "severity", "side", "change", "evidence", "summary")})
    return out


def _version_items(store: Store, row: dict[str, Any], fetch: dict[str, Any] | None, target: dict[str, Any]) -> tuple[list[Item], dict[str, Any]]:
    ref = f"{row['target_id']}@{row['seq']}"
    base = f"versions/{ref}"
    live = row["provenance"] == "live"
    when = row["observed_at"]
    title = f"{target.get('service') or row['target_id']} · {target.get('document') or ''} v{row['seq']} ({when[:10]}{'' if live else ', ' + row['provenance']})"
    items: list[Item] = []
    files: list[dict[str, Any]] = []
    raws = json.loads(row["raws"] or "[]")
    for i, raw in enumerate(raws, start=1):
        data = _read(store, raw["path"], raw["sha256"])
        ctype = raw.get("content_type") or "application/octet-stream"
        ext = raw["path"].rsplit("/", 1)[-1].split(".")[1]
        response = raw.get("response")
        if live and response:
            head_bytes = _read(store, response["path"], response["sha256"])
            head = json.loads(head_bytes)
            body = data if response["body_sha256"] == raw["sha256"] else _read(store, response["body_path"], response["body_sha256"])
            # WARC-Date: when the fetch that made the version started, as its row says (the chain
            # covers it); the headers file keeps the exchange's own clock reading
            started = (fetch or {}).get("started_at") or head.get("started_at") or when
            http = Item("http", "resource", f"urn:monitor:http:{ref}/{i}", started, "application/json", head_bytes, f"{base}/http-{i}.json")
            resp, req = _exchange_items(head, body, started, f"{base}/body-{i}.{ext}", title)
            resp.warc_headers["WARC-Concurrent-To"] = http.record_id
            items += [req, resp, http]
            files += [http.ref(i), resp.ref(i)]
            if response["body_sha256"] == raw["sha256"]:
                files.append({**resp.ref(i), "role": "capture"})
            else:  # the browser's rendered DOM, beside the network response
                dom = Item("capture", "resource", f"urn:monitor:dom:{ref}/{i}", when, ctype, data, f"{base}/dom-{i}.{ext}",
                           warc_headers={"WARC-Concurrent-To": resp.record_id, "WARC-Monitor-Capture": "rendered DOM (browser engine)"})
                items.append(dom)
                files.append(dom.ref(i))
        else:
            headers = {"WARC-Monitor-Provenance": row["provenance"]}
            if row["provenance_ref"]:
                headers["WARC-Monitor-Provenance-Ref"] = row["provenance_ref"]
            if live:
                headers["WARC-Monitor-Note"] = "the response headers of this capture were not kept (stored before they were)"
            else:
                headers["WARC-Monitor-Note"] = f"imported from {row['provenance']}; its date is the archive's claim"
            item = Item("capture", "resource", raw["url"], when, ctype, data, f"{base}/capture-{i}.{ext}", warc_headers=headers, page_title=title)
            items.append(item)
            files.append(item.ref(i))
        for k, shot in enumerate(raw.get("screenshots") or [], start=1):
            image = _read(store, shot["path"], shot["sha256"])
            item = Item("screenshot", "resource", f"urn:monitor:screenshot:{ref}/{i}/{k}", when, f"image/{shot['format']}", image,
                        f"{base}/screenshot-{i}-{k}.{shot['format']}",
                        warc_headers={"WARC-Monitor-Tile": f"top={shot['top']} width={shot['width']} height={shot['height']}"})
            items.append(item)
            files.append(item.ref(i, k))
    text = _read(store, row["text_path"], row["text_sha256"])
    item = Item("text", "resource", f"urn:monitor:text:{ref}", when, "text/markdown; charset=utf-8", text, f"{base}/text.md")
    items.append(item)
    files.append(item.ref())
    entry = {
        "id": row["id"], "ref": ref, "target": row["target_id"], "seq": row["seq"], "observed_at": when,
        "recorded_at": row["recorded_at"], "effective_date": row["effective_date"], "title": row["title"],
        "provenance": row["provenance"], "provenance_ref": row["provenance_ref"], "url": raws[0]["url"] if raws else None,
        "fetch": {k: fetch.get(k) for k in ("started_at", "finished_at", "requested_url", "final_url", "status", "engine", "browser_version")} if fetch else None,
        "files": files,
    }
    return items, entry


def _exchange_items(head: dict[str, Any], body: bytes, started: str, path: str, title: str) -> tuple[Item, Item]:
    """The response record (headers as received but for the transfer ones) and its request."""
    kept, dropped = [], []
    for name, value in head["headers"]:
        (dropped if name.lower() in _TRANSFER_HEADERS else kept).append((name, value))
    kept.append(("Content-Length", str(len(body))))
    protocol = head.get("http_version") or "HTTP/1.1"
    ctype = next((v for n, v in head["headers"] if n.lower() == "content-type"), "application/octet-stream")
    warc = {"WARC-Monitor-Engine": head.get("engine") or ""}
    if dropped:
        warc["WARC-Monitor-Decoded"] = "; ".join(f"{n}: {v}" for n, v in dropped)
    if head.get("browser_version"):
        warc["WARC-Monitor-Browser"] = head["browser_version"]
    if head.get("requested_url") and head["requested_url"] != head["url"]:
        warc["WARC-Monitor-Requested-URI"] = head["requested_url"]
    response = Item("response", "response", head["url"], started, ctype, body, path,
                    status_line=f"{head['status']} {head.get('reason') or ''}".strip(), protocol=protocol, http_headers=kept,
                    warc_headers=warc, page_title=title)
    parts = urlsplit(head["url"])
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    req_headers = [(n, v) for n, v in head.get("request_headers") or [] if not n.startswith(":")]
    if not any(n.lower() == "host" for n, _ in req_headers):
        req_headers.insert(0, ("Host", parts.netloc))
    request = Item("request", "request", head["url"], started, "application/http; msgtype=request", b"", "",
                   status_line=f"{head.get('method') or 'GET'} {target} {protocol}", protocol=protocol, http_headers=req_headers,
                   warc_headers={"WARC-Concurrent-To": response.record_id})
    return response, request


def _read(store: Store, rel: str, sha: str) -> bytes:
    """A stored file, refused if it no longer has the digest its version records."""
    from ..errors import TamperedError as StoreError

    try:
        data = store.read_file(rel)
    except (OSError, EOFError) as exc:
        raise StoreError(f"{rel}: cannot be read ({exc}); run `monitor verify` (nothing exported)") from None
    if sha256_bytes(data) != sha:
        raise StoreError(f"{rel}: its content no longer matches the sha256 its version records; run `monitor verify` (nothing exported)")
    return data
