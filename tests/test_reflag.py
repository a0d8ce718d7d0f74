"""`monitor reflag`: stored changes re-evaluated with the current rules, nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

from monitor.flags import load_rules
from monitor.importers import ImportContext, import_ota, read_ota
from monitor.store import Store
from monitor.targets import load_config

from .conftest import corpus_file, in_process, run_cli, write_config

TARGET = {"id": "linkedin-privacy", "service": "LinkedIn", "document": "privacy-policy",
          "url": "https://www.linkedin.com/legal/privacy-policy"}

# Rules of an older release that knew none of the September 2024 wording.
OLD_RULES = """
rules:
  - id: xx.ai-training.old-wording
    category: ai-training
    severity: high
    match: 'machine learning for the purposes of training'
"""


def _import_with_old_rules(workdir: Path, tmp_path: Path) -> None:
    old_rules = tmp_path / "old-rules"
    old_rules.mkdir()
    (old_rules / "xx.yaml").write_text(OLD_RULES, encoding="utf-8")
    config = load_config(write_config(workdir, [TARGET]))
    folder = corpus_file("LinkedIn", "Privacy Policy")
    files = sorted(folder.glob("2024-0[5-9]*.md"))  # May to September 2024: four versions
    staging = tmp_path / "ota"
    staging.mkdir()
    for path in files:
        (staging / path.name).write_bytes(path.read_bytes())
    with Store(workdir / "monitor.db", workdir / "snapshots") as store:
        store.sync_targets(config.targets)
        ctx = ImportContext(config, store, config.target("linkedin-privacy"), rules=load_rules(rules_dir=old_rules))
        import_ota(ctx, read_ota(staging))


def _report(workdir: Path) -> list[dict]:
    code, out, err = in_process("report", "--all", "--cosmetic", "--format", "json")
    assert code == 0, err
    return json.loads(out)["changes"]


def test_reflag_records_new_evaluations_and_reports_show_them(workdir: Path, tmp_path: Path) -> None:
    _import_with_old_rules(workdir, tmp_path)
    before = {c["id"]: c for c in _report(workdir)}
    september = max(before.values(), key=lambda c: c["new_version"])
    assert not [f for ch in september["changes"] for f in ch["flags"]], "the old rules missed the AI-training change"
    with Store(workdir / "monitor.db", workdir / "snapshots") as store:
        stored = {row["id"]: row["diff"] for row in store.db.query("select id, diff from changes")}

    code, out, err = in_process("reflag", "--dry-run")
    assert code == 0, err
    assert "would record 1 new evaluation" in out, out
    with Store(workdir / "monitor.db", workdir / "snapshots") as store:
        assert store.db["evaluations"].count == 0  # a dry run records nothing

    code, out, err = in_process("reflag", "linkedin-privacy")
    assert code == 0, err
    assert f"#{september['id']} linkedin-privacy" in out and "ai-training/added" in out, out
    assert "recorded 1 new evaluation" in out

    with Store(workdir / "monitor.db", workdir / "snapshots") as store:
        # nothing of the changes was overwritten: what was detected and alerted stays provable
        assert {row["id"]: row["diff"] for row in store.db.query("select id, diff from changes")} == stored
        assert store.db["evaluations"].count == 1
    after = {c["id"]: c for c in _report(workdir)}
    entry = after[september["id"]]
    flags = [f for ch in entry["changes"] for f in ch["flags"]]
    assert entry["evaluated_at"]
    assert any(f["category"] == "ai-training" and f["change"] == "added" for f in flags), flags
    code, out, _ = in_process("report", "--all", "--category", "ai-training", "--format", "json")
    assert [c["id"] for c in json.loads(out)["changes"]] == [september["id"]]  # filters read the evaluation too

    # Idempotent: the same rules again record nothing new.
    code, out, _ = in_process("reflag")
    assert code == 0 and "recorded 0 new evaluations" in out, out
    assert run_cli("verify", cwd=workdir).code == 0
    with Store(workdir / "monitor.db", workdir / "snapshots") as store:  # the evaluation is covered by the chain
        store.db.execute("update evaluations set n_flags = 0")
        store.db.conn.commit()
    forged = run_cli("verify", cwd=workdir)
    assert forged.code == 1 and "evaluation" in forged.out + forged.err
    result = run_cli("reflag", "no-such-target", cwd=workdir)
    assert result.code == 2 and "no-such-target" in result.err and "Traceback" not in result.err
