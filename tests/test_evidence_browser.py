"""Evidence with the real browser: the network response kept beside the rendered DOM,
full-page screenshots (tiles, new versions only), and the issue's done-when: the demo's
September 2024 change exported in one command, checked with no database, replayed by pywb
in Chromium at its original URL; a database edit named by `verify`."""

from __future__ import annotations

import io
import json
import shutil
import socket
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from .conftest import POLICY, Site, archive_tool, in_process, page, run_cli, wait_for, write_config

pytestmark = [pytest.mark.browser]

SCRIPTED = "<script>document.querySelector('main').insertAdjacentHTML('beforeend', '<p>Added by a script after load.</p>')</script>"


def raws_of(directory: Path, seq: int) -> list[dict[str, object]]:
    db = sqlite3.connect(directory / "monitor.db")
    try:
        return json.loads(db.execute("select raws from versions where seq = ?", [seq]).fetchone()[0])
    finally:
        db.close()


def test_browser_keeps_the_network_response_and_a_screenshot_of_new_versions_only(workdir: Path, site: Site) -> None:
    from PIL import Image

    url = site.set("/privacy", page(*POLICY, extra=SCRIPTED), headers={"X-Served-By": "test-site"})
    config = write_config(workdir, [{"id": "acme", "service": "Acme", "document": "privacy-policy", "url": url, "select": "main"}],
                          defaults={"engine": "browser"})
    assert in_process("--config", str(config), "check")[0] == 0
    snapshots = workdir / "snapshots"
    [raw] = raws_of(workdir, 1)
    dom = in_process("--config", str(config), "diff", "acme@1", "acme@1")  # the store reads back
    assert dom[0] == 0
    response = raw["response"]
    assert response["status"] == 200 and response["body_sha256"] != raw["sha256"]  # the network body, not the DOM
    head = json.loads((snapshots / response["path"]).read_text())
    assert ["X-Served-By", "test-site"] in head["headers"] and head["engine"] == "browser" and head["browser_version"]
    assert head["request_headers"] and head["url"] == url
    import gzip

    body = gzip.decompress((snapshots / response["body_path"]).read_bytes())
    rendered = gzip.decompress((snapshots / raw["path"]).read_bytes())
    assert b"Added by a script" not in body.replace(b"insertAdjacentHTML('beforeend', '<p>Added by a script", b"")
    assert b"<p>Added by a script after load.</p>" in rendered
    [shot] = raw["screenshots"]
    image = Image.open(snapshots / shot["path"])
    assert image.format == "WEBP" and image.size == (shot["width"], shot["height"]) and shot["width"] == 1280
    # an unchanged check stores no file (no screenshot kept, none even taken)
    before = sorted(p.name for p in snapshots.rglob("*"))
    assert in_process("--config", str(config), "check")[0] == 0
    assert sorted(p.name for p in snapshots.rglob("*")) == before
    # a tall new version: tiles no taller than WebP allows, covering the page
    tall = "<div style='height: 20000px'>spacer</div>"
    site.set("/privacy", page(*POLICY, "We may use your data to develop and train AI models.", extra=tall))
    assert in_process("--config", str(config), "check")[0] == 0
    shots = raws_of(workdir, 2)[0]["screenshots"]
    assert len(shots) == 2 and shots[0]["height"] == 16383 and shots[1]["top"] == 16383
    assert shots[0]["height"] + shots[1]["height"] > 20000
    assert in_process("--config", str(config), "verify")[0] == 0
    # the export holds the DOM as a resource beside the response, and the screenshots
    out = workdir / "c.wacz"
    code, stdout, err = in_process("--config", str(config), "export", "1", "-o", str(out))
    assert code == 0, err
    with zipfile.ZipFile(out) as wacz:
        evidence_files = [f["role"] for v in _evidence(wacz)["versions"] for f in v["files"]]
    assert evidence_files.count("screenshot") == 3 and evidence_files.count("response") == 2 and evidence_files.count("capture") == 2
    assert in_process("verify", str(out))[0] == 0


def _evidence(wacz: zipfile.ZipFile) -> dict[str, object]:
    from warcio.archiveiterator import ArchiveIterator

    for record in ArchiveIterator(io.BytesIO(wacz.read("archive/data.warc.gz"))):
        if record.rec_type == "metadata":
            return json.loads(record.content_stream().read())
    raise AssertionError("no evidence record")


def test_screenshot_false_takes_none(workdir: Path, site: Site) -> None:
    url = site.set("/privacy", page(*POLICY))
    config = write_config(workdir, [{"id": "acme", "service": "Acme", "document": "privacy-policy", "url": url, "screenshot": False}],
                          defaults={"engine": "browser"})
    assert in_process("--config", str(config), "check")[0] == 0
    [raw] = raws_of(workdir, 1)
    assert "screenshots" not in raw and raw["response"]["status"] == 200


def test_screenshot_true_loads_a_page_http_sufficed_for_in_the_browser_for_the_picture(workdir: Path, site: Site) -> None:
    """`screenshot: true` with plain HTTP: the version keeps the HTTP bytes and text, and a
    screenshot Chromium took of the page; an unchanged check keeps none."""
    import gzip

    from PIL import Image

    url = site.set("/privacy", page(*POLICY, extra=SCRIPTED))
    config = write_config(workdir, [{"id": "acme", "service": "Acme", "document": "privacy-policy", "url": url, "select": "main",
                                     "screenshot": True}], defaults={"engine": "http"})
    assert in_process("--config", str(config), "check")[0] == 0
    snapshots = workdir / "snapshots"
    [raw] = raws_of(workdir, 1)
    head = json.loads((snapshots / raw["response"]["path"]).read_text())
    assert head["engine"] == "http"
    stored = gzip.decompress((snapshots / raw["path"]).read_bytes())
    # the capture is the HTTP body (the script's text only in its source), not the browser's DOM
    assert b"Added by a script" not in stored.replace(b"insertAdjacentHTML('beforeend', '<p>Added by a script", b"")
    [shot] = raw["screenshots"]
    image = Image.open(snapshots / shot["path"])
    assert image.format == "WEBP" and image.size == (shot["width"], shot["height"]) == (1280, shot["height"])
    colours = image.convert("L").getextrema()
    assert colours[0] < 100 < colours[1]  # dark text on a light page, not a blank picture
    # an unchanged check keeps no screenshot (no file at all)
    before = sorted(p.name for p in snapshots.rglob("*"))
    assert in_process("--config", str(config), "check")[0] == 0
    assert sorted(p.name for p in snapshots.rglob("*")) == before
    assert len(sqlite3.connect(workdir / "monitor.db").execute("select id from versions").fetchall()) == 1
    # a new version gets its own
    site.set("/privacy", page(*POLICY, "We may use your data to develop and train AI models."))
    assert in_process("--config", str(config), "check")[0] == 0
    [raw2] = raws_of(workdir, 2)
    assert len(raw2["screenshots"]) == 1 and raw2["screenshots"][0]["sha256"] != shot["sha256"]
    assert in_process("--config", str(config), "verify")[0] == 0


def _replayed_text(browser: object, replay_url: str, original: str) -> str:
    view = browser.new_page()  # type: ignore[attr-defined]
    try:
        view.goto(replay_url, wait_until="load", timeout=60_000)
        for _ in range(300):
            frames = [f for f in view.frames if f.url.endswith("mp_/" + original)]
            if frames:
                break
            view.wait_for_timeout(100)
        assert frames, [f.url for f in view.frames]
        frames[0].wait_for_selector("main", state="attached", timeout=30_000)
        assert frames[0].evaluate("String(window.WB_wombat_location && window.WB_wombat_location.href)") == original
        return str(frames[0].inner_text("main"))
    finally:
        view.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_demo_change_exported_verified_without_database_and_replayed_by_pywb(tmp_path: Path) -> None:
    """The issue's done-when, end to end."""
    demo = tmp_path / "demo"
    assert run_cli("demo", "--dir", str(demo), "--versions", "17").code == 0
    config = str(demo / "targets.yaml")
    bundle = tmp_path / "change-14.wacz"
    result = run_cli("--config", config, "export", "14", "-o", str(bundle))
    assert result.code == 0, result.err
    # one file: both captures as responses at the original URL, the screenshots, the diff and flags
    with zipfile.ZipFile(bundle) as wacz:
        evidence = _evidence(wacz)
        warc = wacz.read("archive/data.warc.gz")
    [change] = evidence["changes"]
    assert change["new_effective_date"] == "2024-09-18" and {f["category"] for f in change["flags"]} >= {"ai-training", "ai-third-party"}
    roles = [f["role"] for v in evidence["versions"] for f in v["files"]]
    assert roles.count("response") == 2 and roles.count("screenshot") >= 2
    # checked with no database
    moved = tmp_path / "elsewhere"
    shutil.move(str(demo), moved)
    verified = run_cli("verify", str(bundle))
    assert verified.code == 0 and "verify: ok" in verified.out, verified.out
    shutil.move(str(moved), demo)
    # replayed by pywb; Chromium shows the policy as captured before and after, at its original URL
    warc_path = tmp_path / "change-14.warc.gz"
    warc_path.write_bytes(warc)
    root = tmp_path / "pywb"
    root.mkdir()
    subprocess.run([str(archive_tool("wb-manager")), "init", "evidence"], cwd=root, check=True, capture_output=True, timeout=120)
    subprocess.run([str(archive_tool("wb-manager")), "add", "evidence", str(warc_path)], cwd=root, check=True, capture_output=True, timeout=120)
    port = _free_port()
    server = subprocess.Popen([str(archive_tool("wayback")), "-p", str(port), "-b", "127.0.0.1"], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        assert wait_for(up, timeout=60)
        original = next(v["url"] for v in evidence["versions"])
        from playwright.sync_api import sync_playwright

        from monitor.browser import launch_args
        from monitor.fetch.browser import _executable_for

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=_executable_for(pw), args=launch_args(), headless=True)
            try:
                # pywb's replay as a person gets it: its banner page, the archived page in a frame
                # (mp_ mode) at the capture nearest the date asked, under its original URL
                after = _replayed_text(browser, f"http://127.0.0.1:{port}/evidence/20240919061013/{original}", original)
                assert "develop and train artificial intelligence (AI) models" in after
                before = _replayed_text(browser, f"http://127.0.0.1:{port}/evidence/20240801181011/{original}", original)
                assert "LinkedIn" in before and "develop and train artificial intelligence" not in before
            finally:
                browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    # a database edit anywhere the chain covers is named
    db = sqlite3.connect(demo / "monitor.db")
    db.execute("update versions set effective_date = '2024-11-20' where seq = 15")
    db.commit()
    db.close()
    tampered = run_cli("--config", config, "verify")
    assert tampered.code == 1 and "linkedin-privacy@15: chain hash does not match the recorded content (a row was edited): effective_date" in tampered.out
    refused = run_cli("--config", config, "export", "14", "-o", str(tmp_path / "again.wacz"))
    assert refused.code == 1 and "version" in refused.err and "monitor verify" in refused.err
