"""Evidence: `monitor export` (WACZ, WARC, zip), `monitor verify FILE` with no database,
`monitor anchor`. Real pages from a local server, real fetches, a real SQLite store; the
bundles are read back with warcio and validated with the `wacz` package."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from .conftest import POLICY, Site, archive_tool, in_process, page, write_config

AI_CLAUSE = "We may use your data to develop and train artificial intelligence (AI) models."


@pytest.fixture
def archive(workdir: Path, site: Site) -> dict[str, object]:
    """A store with two versions and one flagged change of a page fetched over HTTP."""
    url = site.set("/privacy", page(*POLICY), headers={"X-Served-By": "test-site"})
    config = write_config(workdir, [{"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": url, "select": "main"}])
    assert in_process("--config", str(config), "check")[0] == 0
    site.set("/privacy", page(*POLICY, AI_CLAUSE), headers={"X-Served-By": "test-site"})
    code, out, err = in_process("--config", str(config), "check")
    assert code == 0, err
    return {"config": config, "url": url, "dir": workdir}


def export(config: Path, *args: str) -> tuple[int, str, str]:
    return in_process("--config", str(config), "export", *args)


def records(warc: bytes) -> list[object]:
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for record in ArchiveIterator(io.BytesIO(warc), check_digests=True):
        record.payload = record.raw_stream.read()
        assert record.digest_checker.passed is not False, record.digest_checker.problems
        out.append(record)
    return out


def test_export_change_as_wacz_reads_back_and_verifies_without_the_database(archive: dict[str, object], tmp_path: Path) -> None:
    config = archive["config"]
    out = tmp_path / "change-1.wacz"
    code, stdout, err = export(config, "1", "-o", str(out))
    assert code == 0, err
    assert "2 versions, 1 changes" in stdout and "response" in stdout
    with zipfile.ZipFile(out) as wacz:
        names = set(wacz.namelist())
        assert {"archive/data.warc.gz", "indexes/index.cdx", "pages/pages.jsonl", "datapackage.json", "datapackage-digest.json"} <= names
        assert wacz.getinfo("archive/data.warc.gz").compress_type == zipfile.ZIP_STORED
        package = json.loads(wacz.read("datapackage.json"))
        for resource in package["resources"]:
            assert resource["hash"] == "sha256:" + hashlib.sha256(wacz.read(resource["path"])).hexdigest()
        digest = json.loads(wacz.read("datapackage-digest.json"))
        assert digest["hash"] == "sha256:" + hashlib.sha256(wacz.read("datapackage.json")).hexdigest()
        warc = wacz.read("archive/data.warc.gz")
        pages = [json.loads(line) for line in wacz.read("pages/pages.jsonl").decode().splitlines()]
        index = wacz.read("indexes/index.cdx").decode().splitlines()
    # every record parses and its sha256 digests match
    got = records(warc)
    kinds = [r.rec_type for r in got]
    assert kinds[0] == "warcinfo" and kinds[-1] == "metadata"
    assert kinds.count("response") == 2 and kinds.count("request") == 2
    responses = [r for r in got if r.rec_type == "response"]
    assert all(r.rec_headers.get_header("WARC-Target-URI") == archive["url"] for r in responses)
    assert responses[0].http_headers.get_statuscode() == "200"
    assert responses[0].http_headers.get_header("X-Served-By") == "test-site"
    assert AI_CLAUSE.encode() in responses[1].payload and AI_CLAUSE.encode() not in responses[0].payload
    assert all(r.rec_headers.get_header("WARC-Payload-Digest").startswith("sha256:") for r in got if r.rec_type != "warcinfo")
    evidence = json.loads(got[-1].payload)
    assert evidence["changes"][0]["flags"] and evidence["changes"][0]["flags"][0]["category"] == "ai-training"
    assert [v["ref"] for v in evidence["versions"]] == ["acme-privacy@1", "acme-privacy@2"]
    assert len(evidence["chain"]["entries"]) == 3 and evidence["chain"]["links"][-1][0] == int(evidence["chain"]["head"].split(":")[0])
    diff_html = next(r for r in got if r.rec_headers.get_header("WARC-Target-URI") == "urn:monitor:change:1/diff.html")
    assert b"develop and train artificial intelligence" in diff_html.payload
    # pages.jsonl lists both captures at the original URL; the index finds them
    assert pages[0]["format"] == "json-pages-1.0" and [p["url"] for p in pages[1:]] == [archive["url"]] * 2
    assert sum(1 for line in index if '"status":"200"' in line and archive["url"] in line) == 2
    # the index keys are the ones Webrecorder's indexer computes
    import surt as surt_lib
    from warcio.archiveiterator import ArchiveIterator

    from monitor.evidence.write import surt

    for record in ArchiveIterator(io.BytesIO(warc)):
        uri = record.rec_headers.get_header("WARC-Target-URI") or ""
        if uri.startswith("http"):
            assert surt(uri) == surt_lib.surt(uri)
    # the wacz package's own validation
    validated = subprocess.run([str(archive_tool("wacz")), "validate", "-f", str(out)], capture_output=True, text=True, timeout=300)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    # and ours, with no database at all
    (archive["dir"] / "monitor.db").rename(archive["dir"] / "moved.db")
    code, stdout, err = in_process("verify", str(out))
    assert code == 0, stdout + err
    assert "verify: ok" in stdout and "2 versions, 1 changes" in stdout


@pytest.mark.parametrize("fmt", ["wacz", "warc", "zip"])
def test_one_byte_changed_fails_verify(archive: dict[str, object], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"bundle.{fmt}"
    assert export(archive["config"], "1", "--format", fmt, "-o", str(out))[0] == 0
    assert in_process("verify", str(out))[0] == 0
    data = bytearray(out.read_bytes())
    if fmt == "zip":
        # a byte of the new version's text, inside the zip (stored deflated: change the file and re-zip it)
        with zipfile.ZipFile(out) as bundle:
            files = {name: bundle.read(name) for name in bundle.namelist()}
        text = bytearray(files["versions/acme-privacy@2/text.md"])
        text[10] ^= 1
        files["versions/acme-privacy@2/text.md"] = bytes(text)
        with zipfile.ZipFile(out, "w") as bundle:
            for name, body in files.items():
                bundle.writestr(name, body)
        code, stdout, _ = in_process("verify", str(out))
        assert code == 1
        assert "versions/acme-privacy@2/text.md: sha256 does not match manifest.json" in stdout
        return
    # a byte in the middle of the WARC data
    start = data.find(b"\x1f\x8b", len(data) // 2)
    data[start + 200] ^= 0xFF
    out.write_bytes(bytes(data))
    code, stdout, _ = in_process("verify", str(out))
    assert code == 1, stdout
    assert "problem" in stdout


def test_a_rebuilt_bundle_is_still_caught_by_the_chain(archive: dict[str, object], tmp_path: Path) -> None:
    """Edit a text and recompute every container digest: the chain entry still disagrees;
    edit the flags listed in evidence.json: they are not the diff's."""
    out = tmp_path / "bundle.zip"
    assert export(archive["config"], "1", "--format", "zip", "-o", str(out))[0] == 0
    with zipfile.ZipFile(out) as bundle:
        files = {name: bundle.read(name) for name in bundle.namelist()}
    files["versions/acme-privacy@2/text.md"] = files["versions/acme-privacy@2/text.md"].replace(b"train", b"tune")
    evidence = json.loads(files["evidence.json"])
    for version in evidence["versions"]:
        for ref in version["files"]:
            if ref["path"] == "versions/acme-privacy@2/text.md":
                ref["sha256"] = hashlib.sha256(files[ref["path"]]).hexdigest()
    evidence["changes"][0]["flags"] = []
    files["evidence.json"] = json.dumps(evidence).encode()
    manifest = json.loads(files["manifest.json"])
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(files[entry["path"]]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(out, "w") as bundle:
        for name, body in files.items():
            bundle.writestr(name, body)
    code, stdout, _ = in_process("verify", str(out))
    assert code == 1
    assert "acme-privacy@2: the extracted text does not match the sha256 its chain entry records" in stdout
    assert "change 1: the flags evidence.json lists are not the flags of the diff JSON" in stdout


def test_zip_bundle_is_readable_by_a_person(archive: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    assert export(archive["config"], "acme-privacy@2", "--format", "zip", "-o", str(out))[0] == 0
    with zipfile.ZipFile(out) as bundle:
        readme = bundle.read("README.txt").decode()
        manifest = json.loads(bundle.read("manifest.json"))
        headers = json.loads(bundle.read("versions/acme-privacy@2/http-1.json"))
    assert "acme-privacy@2" in readme and "flag ai-training" in readme and "monitor verify bundle.zip" in readme
    assert {f["path"] for f in manifest["files"]} >= {"evidence.json", "README.txt", "changes/1/diff.html", "versions/acme-privacy@2/text.md"}
    assert headers["status"] == 200 and ["X-Served-By", "test-site"] in headers["headers"]
    assert headers["engine"] == "http" and headers["requested_url"] == archive["url"]


def test_export_selections_and_refusals(archive: dict[str, object], tmp_path: Path) -> None:
    config = archive["config"]
    assert export(config, "acme-privacy", "-o", str(tmp_path / "t.wacz"))[0] == 0
    code, out, _ = export(config, "--all", "--format", "warc", "-o", str(tmp_path / "all.warc.gz"))
    assert code == 0 and "2 versions, 1 changes" in out
    code, out, err = export(config, "acme-privacy", "--since", "2000-01-01", "--until", "2000-12-31")
    assert code == 2 and "no versions stored in that range" in err
    assert export(config, "99")[0] == 2
    assert export(config, "nope")[0] == 2
    assert export(config)[0] == 2  # nothing named
    # a stored file that no longer matches its digest: nothing is exported
    store_dir = archive["dir"] / "snapshots" / "acme-privacy"
    text = next(p for p in store_dir.glob("*.md.gz"))  # extracted texts are stored compressed
    text.write_bytes(gzip.compress(gzip.decompress(text.read_bytes()) + b"forged\n"))
    code, out, err = export(config, "1", "-o", str(tmp_path / "no.wacz"))
    assert code == 1 and "no longer matches" in err and not (tmp_path / "no.wacz").exists()


def test_database_edits_the_chain_covers_are_named(archive: dict[str, object]) -> None:
    """The network response's headers file and its digest are part of the chain."""
    config = archive["config"]
    db = sqlite3.connect(archive["dir"] / "monitor.db")
    raws = json.loads(db.execute("select raws from versions where seq = 2").fetchone()[0])
    head_file = archive["dir"] / "snapshots" / raws[0]["response"]["path"]
    original = head_file.read_bytes()
    head_file.write_bytes(original.replace(b"test-site", b"other-site"))
    code, out, _ = in_process("--config", str(config), "verify")
    assert code == 1 and f"acme-privacy@2: content of {raws[0]['response']['path']} does not match its recorded sha256" in out
    head_file.write_bytes(original)
    raws[0]["response"]["status"] = 203
    db.execute("update versions set raws = ? where seq = 2", [json.dumps(raws)])
    db.commit()
    code, out, _ = in_process("--config", str(config), "verify")
    assert code == 1 and "acme-privacy@2: chain hash does not match the recorded content (a row was edited): raws differ" in out


def test_anchor_and_verify_against_it(archive: dict[str, object], tmp_path: Path) -> None:
    config = archive["config"]
    log = tmp_path / "anchors.log"
    code, out, _ = in_process("--config", str(config), "anchor", "--to", str(log))
    assert code == 0
    when, head, _, store_id = out.split()
    assert head.startswith("3:") and when.endswith("Z") and log.read_text().strip() == out.strip()
    code, out, _ = in_process("--config", str(config), "verify", "--anchor", str(log))
    assert code == 0 and "1 head(s) given, all extended" in out
    bundle = tmp_path / "c.wacz"
    assert export(config, "1", "-o", str(bundle))[0] == 0
    assert in_process("verify", str(bundle), "--anchor", str(log))[0] == 0
    # the chain rewritten past the anchor: both the database and the anchor say so
    db = sqlite3.connect(archive["dir"] / "monitor.db")
    db.execute("delete from chain where position = 3")
    db.commit()
    code, out, _ = in_process("--config", str(config), "verify", "--anchor", str(log))
    assert code == 1 and f"anchor {log.name}:1: names chain entry 3 but the chain ends at 2" in out
    forged = tmp_path / "forged.log"
    forged.write_text(f"2026-01-01T00:00:00Z  2:{'0' * 64}\n")
    code, out, _ = in_process("verify", str(bundle), "--anchor", str(forged))
    assert code == 1 and "does not match the bundle's chain at 2" in out
