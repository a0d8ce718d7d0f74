"""`monitor targets`, `monitor add`, `monitor remove`: targets.yaml edited from the command
line with its comments and layout kept, refusing what `validate` rejects; a purge of stored
history recorded in the hash chain (real SQLite, real checks against a local server)."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

from monitor.store import Store
from monitor.targets import load_config

from .conftest import POLICY, ROOT, Site, in_process, page, run_cli, write_config


def shipped(workdir: Path) -> Path:
    """The shipped targets.yaml (comments, grouping, inline comments), copied."""
    path = workdir / "targets.yaml"
    shutil.copy(ROOT / "targets.yaml", path)
    return path


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:2] in ("- ", "+ ")]


def test_add_appends_keeping_every_comment_and_line(workdir: Path) -> None:
    path = shipped(workdir)
    before = path.read_text(encoding="utf-8")
    code, _, err = in_process(
        "add", "https://www.linkedin.com/help/linkedin/answer/a1234567", "--id", "linkedin-new-faq", "--service", "LinkedIn",
        "--document", "faq", "--select", '[role="main"]', "--engine", "http", "--tag", "linkedin", "--tag", "ai",
    )
    assert code == 0, err
    after = path.read_text(encoding="utf-8")
    assert after.startswith(before)  # nothing before it moved, not one comment lost
    assert changed_lines(before, after) == [
        "+ ",
        "+   - id: linkedin-new-faq",
        "+     service: LinkedIn",
        "+     document: faq",
        "+     url: https://www.linkedin.com/help/linkedin/answer/a1234567",
        "+     select: ['[role=\"main\"]']",
        "+     engine: http",
        "+     tags: [linkedin, ai]",
    ]
    target = load_config(path).target("linkedin-new-faq")
    assert target.select == ('[role="main"]',) and target.engine == "http"
    assert in_process("validate")[0] == 0


def test_add_refuses_what_validate_rejects(workdir: Path) -> None:
    path = shipped(workdir)
    before = path.read_text(encoding="utf-8")
    cases = [
        (["https://x.example/p", "--id", "linkedin-privacy", "--service", "X", "--document", "faq"], "duplicate id"),
        (["https://x.example/p", "--id", "Bad Id", "--service", "X", "--document", "faq"], "not a valid id"),
        (["https://x.example/p", "--id", "x-new", "--service", "X", "--document", "faqs"], "did you mean 'faq'"),
        (["ftp://x.example/p", "--id", "x-new", "--service", "X", "--document", "faq"], "not an http(s) URL"),
        (["https://x.example/p", "--id", "x-new", "--service", "X", "--document", "faq", "--select", "main[["], "not a valid CSS selector"),
        (["https://x.example/p", "--id", "x-new", "--service", "X", "--document", "faq", "--engine", "curl"], "is not one of auto, http, browser"),
    ]
    for args, reason in cases:
        code, _, err = in_process("add", *args)
        assert code == 2, (args, err)
        assert err.startswith("error: add: refused") and reason in err and "nothing written" in err, err
    assert path.read_text(encoding="utf-8") == before


def test_remove_disables_then_deletes_keeping_comments_and_history(workdir: Path, site: Site) -> None:
    site.set("/privacy", page(*POLICY))
    site.set("/terms", page("These terms govern your use.", title="Terms"))
    path = write_config(workdir, [
        {"id": "p", "service": "Fixture", "document": "privacy-policy", "url": site.url("/privacy")},
        {"id": "t", "service": "Fixture", "document": "terms", "url": site.url("/terms")},
    ])
    path.write_text("# my targets\n" + path.read_text(encoding="utf-8").replace("- id: t\n", "# the terms, checked daily\n- id: t\n"), encoding="utf-8")
    assert in_process("check", "--no-alerts")[0] == 0
    before = path.read_text(encoding="utf-8")

    code, _, err = in_process("remove", "t")
    assert code == 0, err
    assert changed_lines(before, path.read_text(encoding="utf-8")) == ["+   enabled: false"]
    code, out, _ = in_process("targets", "--format", "json")
    assert {r["id"]: r["state"] for r in json.loads(out)} == {"p": "ok", "t": "disabled"}
    code, _, err = in_process("remove", "t")
    assert code == 2 and "already disabled" in err

    code, _, err = in_process("remove", "t", "--delete")
    assert code == 0, err
    after = path.read_text(encoding="utf-8")
    assert "# my targets" in after and "# the terms, checked daily" in after and "- id: t" not in after
    assert in_process("validate")[0] == 0
    with Store.open(load_config(path)) as store:  # history kept
        assert len(store.versions("t")) == 1

    code, _, err = in_process("remove", "nope")
    assert code == 2 and "no target with id 'nope'" in err


def test_purge_asks_then_deletes_history_and_verify_still_passes(workdir: Path, site: Site) -> None:
    site.set("/privacy", page(*POLICY))
    site.set("/terms", page("These terms govern your use.", title="Terms"))
    write_config(workdir, [
        {"id": "p", "service": "Fixture", "document": "privacy-policy", "url": site.url("/privacy")},
        {"id": "t", "service": "Fixture", "document": "terms", "url": site.url("/terms")},
    ])
    assert in_process("check", "--no-alerts")[0] == 0
    site.set("/terms", page("These terms govern your use.", "We may now use your content to train our AI models.", title="Terms"))
    assert in_process("check", "t", "--no-alerts")[0] == 0

    refused = run_cli("remove", "t", "--purge", cwd=workdir)  # no terminal to ask on
    assert refused.code == 2 and "pass --yes" in refused.err
    assert "- id: t" in (workdir / "targets.yaml").read_text(encoding="utf-8")

    code, _, err = in_process("remove", "t", "--purge", "--yes")
    assert code == 0, err
    assert "purged 2 version(s), 1 change(s)" in err
    config = load_config(workdir / "targets.yaml")
    assert [t.id for t in config.targets] == ["p"]
    with Store.open(config) as store:
        assert store.db.execute("select count(*) from versions where target_id = 't'").fetchone()[0] == 0
        assert store.db.execute("select count(*) from changes where target_id = 't'").fetchone()[0] == 0
    assert not (workdir / "snapshots" / "t").exists()
    code, out, err = in_process("verify")
    assert code == 0, out + err
    # a row deleted without a purge is still caught
    with Store.open(config) as store:
        store.db.execute("delete from versions where target_id = 'p'")
        store.db.conn.commit()
    code, out, err = in_process("verify")
    assert code == 1 and "row deleted" in out + err


def test_targets_lists_every_target(workdir: Path) -> None:
    shipped(workdir)
    code, out, err = in_process("targets")
    assert code == 0, err
    assert "linkedin-genai-faq" in out and "https://www.linkedin.com/legal/privacy-policy" in out
    code, out, _ = in_process("targets", "--format", "json")
    rows = json.loads(out)
    assert len(rows) == len(load_config(workdir / "targets.yaml").targets)
    first = rows[0]
    assert {k: first[k] for k in ("id", "service", "document", "engine", "schedule", "state")} == {
        "id": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy", "engine": "auto", "schedule": "6h", "state": "new",
    }
