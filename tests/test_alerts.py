"""Alerts: the outbox, email through a real SMTP server (aiosmtpd on 127.0.0.1), the webhook
through a real local HTTP server. Nothing is mocked; "server down" means nothing listens."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts import (
    AlertRow,
    backoff_delay,
    build_email,
    deliver_pending,
    list_alerts,
    plan_change_alerts,
    plan_state_alerts,
)
from monitor.diff import compare
from monitor.extract import extract_html
from monitor.render.email import ChangeView, render_change, render_digest
from monitor.render.view import readable_segments
from monitor.flags import Flag
from monitor.schedule import SENDER_POLL_SECONDS
from monitor.store import FetchRecord, RawPart, Store, to_timestamp, utcnow
from monitor.targets import Config, load_config

from .conftest import POLICY, Site, in_process, page, run_cli, wait_for, write_config

AI_CLAUSE = "We may use your personal data to develop and train artificial intelligence (AI) models."
SENDER = "monitor@example.org"
ALICE = "alice@example.org"


# ----------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Mailbox:
    """What a real SMTP server received: envelopes, and the messages parsed back."""

    envelopes: list[Any] = field(default_factory=list)

    refuse: tuple[str, ...] = ()  # recipients answered with 550

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook name
        self.envelopes.append(envelope)
        return "250 OK"

    @property
    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.original_content or e.content, policy=email.policy.default) for e in self.envelopes]  # type: ignore[misc]


class SmtpServer:
    """aiosmtpd on 127.0.0.1 at a fixed port, so it can be down first and up later."""

    def __init__(self, port: int | None = None, **smtp_options: Any):
        self.port = port or free_port()
        self.mailbox = Mailbox()
        self.options = smtp_options
        self.controller: Any = None

    def start(self) -> SmtpServer:
        from aiosmtpd.controller import Controller

        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **self.options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def messages(self) -> list[EmailMessage]:
        return self.mailbox.messages


@pytest.fixture
def smtp() -> Iterator[Callable[..., SmtpServer]]:
    """A factory: smtp() is a server not yet started (down); .start() brings it up."""
    servers: list[SmtpServer] = []

    def make(**options: Any) -> SmtpServer:
        server = SmtpServer(**options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


class Hook:
    """A local HTTP server that records POSTs and answers with the statuses it is given."""

    def __init__(self, statuses: list[int] | None = None):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses = list(statuses or [])
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = hook.statuses.pop(0) if hook.statuses else 200
                if 200 <= status < 300:
                    hook.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Callable[..., Hook]]:
    hooks: list[Hook] = []

    def make(statuses: list[int] | None = None) -> Hook:
        hooks.append(Hook(statuses))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


# ----------------------------------------------------------------------------- helpers


def email_alerts(port: int, **extra: Any) -> dict[str, Any]:
    smtp = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": "5s", **extra.pop("smtp", {})}
    return {"smtp": smtp, "from": SENDER, "to": [ALICE], **extra}


def setup_site(workdir: Path, site: Site, alerts: dict[str, Any], **target: Any) -> Path:
    site.set("/privacy", page(*POLICY))
    spec = {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": site.url("/privacy"), **target}
    return write_config(workdir, [spec], alerts=alerts)


def check(config_path: Path, *args: str) -> tuple[int, str, str]:
    return in_process("--config", str(config_path), "check", *args)


def rows(config: Config) -> list[AlertRow]:
    with Store.open(config) as store:
        return list_alerts(store)


def deliver(config: Config, *, now: datetime | None = None) -> Any:
    with Store.open(config) as store:
        return deliver_pending(store, config, now=now)


def ai_flag(side: str = "new") -> Flag:
    return Flag("ai-training", "high", "ai-training-use", "develop and train artificial intelligence", side)


def record_change(config: Config, old: list[str], new: list[str], *, flags: dict[int, list[Flag]] | None = None, target_index: int = 0) -> int:
    """Store two versions and the change between them with its planned alerts, as check.py
    does; flags are given by the test (clause position -> flags) so no rule file is needed."""
    target = config.targets[target_index]
    with Store.open(config) as store:
        store.sync_targets(config.targets)
        versions = []
        for paragraphs in (old, new):
            html = page(*paragraphs)
            now = utcnow()
            document = extract_html(html)
            record = FetchRecord(target.id, now, now, target.url, status=200, engine="http")
            version = store.add_version(target.id, [RawPart(target.url, html.encode(), "html")], document, observed_at=now, fetch=record)
            versions.append(version or store.latest_version(target.id))
        result = compare(store.document(versions[0]), store.document(versions[1]), flag=False)
        for position, change_flags in (flags or {}).items():
            [c for c in result.changes if not c.cosmetic][position].flags = change_flags
        alert_rows = plan_change_alerts(config.alerts, target, result)
        return store.add_change(versions[0], versions[1], result, alert_rows=alert_rows)


def plain_and_html(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None, "expected multipart/alternative with text and HTML"
    return text.get_content(), html.get_content()


def view(diff: dict[str, Any], *, title: str = "Acme · Privacy Policy", change_id: int = 7) -> ChangeView:
    target = {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": "https://acme.example/privacy", "title": title}
    return ChangeView(change_id=change_id, target=target, detected_at="2024-09-18T10:00:00.000Z", old_seq=3, new_seq=4, diff=diff)


def diff_of(*changes: dict[str, Any], signals: list[dict[str, Any]] | None = None, dates: tuple[str | None, str | None] = ("2024-01-01", "2024-09-18")) -> dict[str, Any]:
    return {
        "substantive": True,
        "old": {"source": "a", "effective_date": dates[0]},
        "new": {"source": "b", "effective_date": dates[1]},
        "signals": signals or [],
        "changes": list(changes),
    }


def added(text: str, *flags: dict[str, Any], section: str = "") -> dict[str, Any]:
    return {"kind": "added", "cosmetic": False, "reason": None, "section": section, "old": None, "new": text, "spans": [], "flags": list(flags)}


def modified(old: str, new: str, spans: list[tuple[str, str]], *flags: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "modified", "cosmetic": False, "reason": None, "section": "Data", "old": old, "new": new,
        "spans": [{"op": op, "text": text} for op, text in spans], "flags": list(flags),
    }


AI_FLAG = {"category": "ai-training", "severity": "high", "rule": "ai-training-use", "evidence": "develop and train artificial intelligence", "side": "new"}


@pytest.fixture
def config(workdir: Path) -> Config:
    """A config with email and a webhook on ports where nothing listens (no delivery)."""
    alerts = {**email_alerts(free_port()), "webhook": {"url": f"http://127.0.0.1:{free_port()}/hook"}}
    path = write_config(workdir, [
        {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": "https://acme.example/privacy"},
        {"id": "acme-terms", "service": "Acme", "document": "terms", "url": "https://acme.example/terms", "alerts_to": ["legal@example.org"]},
    ], alerts=alerts)
    return load_config(path)


# ----------------------------------------------------------------------------- planning


def test_every_substantive_change_is_planned_once_per_channel(config: Config) -> None:
    change_id = record_change(config, POLICY, [*POLICY, "We now keep logs for two years."])
    planned = rows(config)
    assert sorted(r.channel for r in planned) == ["email", "webhook"]
    assert all(r.kind == "change" and r.change_id == change_id and r.state == "pending" for r in planned)
    assert next(r for r in planned if r.channel == "email").recipients == (ALICE,)
    assert planned[0].payload["target"]["title"] == "Acme · Privacy Policy"


def test_target_recipients_override_and_state_alerts(config: Config) -> None:
    terms = config.targets[1]
    planned = plan_state_alerts(config.alerts, terms, "failing", "3 consecutive failures; last: http-404")
    assert [(r["kind"], r["channel"]) for r in planned] == [("failing", "email"), ("failing", "webhook")]
    assert json.loads(planned[0]["recipients"]) == ["legal@example.org"]
    with pytest.raises(ValueError):
        plan_state_alerts(config.alerts, terms, "sleeping", "")


def test_only_flagged_and_min_severity_decide_what_is_planned(workdir: Path) -> None:
    path = write_config(workdir, [{"id": "t", "service": "S", "document": "terms", "url": "https://s.example/t"}],
                        alerts={**email_alerts(free_port()), "only_flagged": True, "min_severity": "high"})
    config = load_config(path)
    target = config.targets[0]
    old, new = extract_html(page(*POLICY)), extract_html(page(*POLICY, AI_CLAUSE))
    result = compare(old, new, flag=False)
    assert plan_change_alerts(config.alerts, target, result) == []  # no flag at all
    result.changes[-1].flags = [Flag("ai-training", "medium", "r", "train", "new")]
    assert plan_change_alerts(config.alerts, target, result) == []  # below min_severity
    result.changes[-1].flags = [ai_flag()]
    assert len(plan_change_alerts(config.alerts, target, result)) == 1
    cosmetic = compare(old, extract_html(page(*POLICY)), flag=False)
    assert plan_change_alerts(config.alerts, target, cosmetic) == []  # nothing substantive


# ----------------------------------------------------------------------------- rendering


def test_change_email_puts_flagged_clauses_first_with_evidence(config: Config) -> None:
    diff = diff_of(
        modified("We share data with partners.", "We share data with partners and affiliates.",
                 [("equal", "We share data with partners"), ("insert", " and affiliates"), ("equal", ".")]),
        added(AI_CLAUSE, AI_FLAG, {**AI_FLAG, "severity": "medium", "rule": "ai-models"}, section="Privacy > Use of data"),
        signals=[{"kind": "silent-update", "message": "substantive change but the stated date is still 2024-09-18"}],
        dates=("2024-09-18", "2024-09-18"),
    )
    rendered = render_change(config, view(diff))
    assert rendered.subject == "[privacy monitor] Acme · Privacy Policy changed: AI training clause added (2 flags)"
    text = rendered.text
    assert text.index("FLAGGED CHANGES (1)") < text.index("Added clause · Privacy > Use of data") < text.index("OTHER CHANGES (1)")
    assert 'Evidence: "develop and train artificial intelligence"' in text
    assert "We share data with partners {+and affiliates+}." in text  # spaces outside the marks
    assert "Stated effective date: 2024-09-18 (unchanged)." in text
    assert "! Silent update: substantive change but the stated date is still 2024-09-18" in text
    assert f"Full diff: monitor --config {config.path} show 7" in text
    assert "https://acme.example/privacy" in text
    html = rendered.html
    assert '<ins style="' in html and "> and affiliates</ins>" in html
    assert "<style" not in html and "class=" not in html  # inline styles only
    assert "Evidence: “develop and train artificial intelligence”" in html


def test_subject_wording_follows_the_flagged_change(config: Config) -> None:
    changed = diff_of(modified("We use data.", AI_CLAUSE, [("delete", "We use data."), ("insert", AI_CLAUSE)], AI_FLAG))
    assert render_change(config, view(changed)).subject.endswith("changed: AI training clause changed (1 flag)")
    promise = {**AI_FLAG, "side": "old", "evidence": "we do not train"}
    removed = diff_of({**added("We do not train AI on your data.", promise), "kind": "removed", "old": "We do not train AI on your data.", "new": None})
    assert render_change(config, view(removed)).subject.endswith("changed: AI training clause removed (1 flag)")
    plain = diff_of(added("We now keep logs for two years."), added("Contact us by post."))
    assert render_change(config, view(plain)).subject.endswith("changed: 2 added")


def test_links_are_shown_readably() -> None:
    segments = readable_segments([{"op": "equal", "text": "See our [Cookie Policy](https://acme.example/cookies) and \\[notes\\]."}])
    assert "".join(s.text for s in segments) == "See our Cookie Policy and [notes]."
    assert [s.href for s in segments if s.href] == ["https://acme.example/cookies"]
    moved = readable_segments([
        {"op": "equal", "text": "See [Cookie Policy"}, {"op": "delete", "text": "](https://old.example/c)"},
        {"op": "insert", "text": "](https://new.example/c)"}, {"op": "equal", "text": "."},
    ])
    assert "".join(s.text for s in moved) == "See Cookie Policy <https://old.example/c> <https://new.example/c>."
    assert {(s.op, s.text) for s in moved if s.op != "equal"} == {("delete", " <https://old.example/c>"), ("insert", " <https://new.example/c>")}


def test_hostile_content_is_escaped_bounded_and_kept_out_of_headers(config: Config) -> None:
    script = "<script>alert(1)</script> We may share data."
    header_like = "Contact us.\r\nBcc: victim@example.com\r\nSubject: pwned"
    huge = "lorem ipsum " * 9000  # about 100 KB
    many = [added(f"Extra clause number {i}.") for i in range(15)]
    diff = diff_of(added(script, {**AI_FLAG, "evidence": "<b>train</b>"}), added(header_like), added(huge), *many)
    rendered = render_change(config, view(diff, title="Acme\r\nBcc: victim@example.com"))
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    message = build_email(rendered, sender=SENDER, recipients=[ALICE], msg_id="<alert-1.x@privacy-monitor>", now=datetime.now(timezone.utc))
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["To"] == ALICE
    assert parsed["Subject"].startswith("[privacy monitor] Acme Bcc: victim@example.com changed")
    text, html = plain_and_html(parsed)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;train&lt;/b&gt;" in html
    assert "\nBcc:" not in text and "Bcc: victim@example.com" in text  # shown as text, inside the clause
    assert len(text) < 20_000 and len(html) < 40_000
    assert "[clause cut here: " in text and "more characters; run `monitor --config" in text
    assert f"8 more changed clauses: run `monitor --config {config.path} show 7` for the full diff." in text
    assert "8 more changed clauses: run" in html


def test_digest_lists_every_change(config: Config) -> None:
    first = view(diff_of(added(AI_CLAUSE, AI_FLAG)), change_id=1)
    second = view(diff_of(added("We now keep logs for two years.")), title="Acme · Terms", change_id=2)
    rendered = render_digest(config, [second, first])
    assert rendered.subject == "[privacy monitor] digest: 2 changes in 1 document (1 flag)"
    assert rendered.text.index("1. Acme · Privacy Policy changed: AI training clause added") < rendered.text.index("2. Acme · Terms changed: 1 added")
    assert "show 1" in rendered.text and "show 2" in rendered.text


def test_backoff_doubles_up_to_an_hour() -> None:
    assert backoff_delay(1, rand=lambda: 0.5) == 30
    assert backoff_delay(3, rand=lambda: 0.5) == 120
    assert backoff_delay(20, rand=lambda: 1.0) == 3600
    assert 24 <= backoff_delay(1) <= 36


# ----------------------------------------------------------------------------- delivery, end to end


def test_a_change_yields_exactly_one_email(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp().start()
    config_path = setup_site(workdir, site, email_alerts(server.port))
    assert check(config_path)[0] == 0
    assert server.messages == []  # a first version is not a change
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    code, out, _ = check(config_path)
    assert code == 0 and "alerts: 1 sent" in out
    [message] = server.messages
    assert message["Subject"] == "[privacy monitor] Acme · Privacy Policy changed: AI training clause added (1 flag)"
    assert message["From"] == SENDER and message["To"] == ALICE
    assert server.mailbox.envelopes[0].rcpt_tos == [ALICE]
    [row] = rows(load_config(config_path))
    assert row.state == "sent" and message["Message-ID"] == row.message_id
    assert row.message_id.startswith(f"<alert-{row.id}.") and row.message_id.endswith("@example.org>")  # the From domain
    text, html = plain_and_html(message)
    assert "FLAGGED CHANGES (1)" in text and "develop and train artificial intelligence" in text
    assert site.url("/privacy") in text and "show " in text
    assert "develop and train" in html
    assert check(config_path)[0] == 0  # unchanged
    assert len(server.messages) == 1


def test_emails_thread_per_document_link_the_report_and_colour_flags_by_severity(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    """Parsed from the real SMTP conversation, as a mail client would read it."""
    server = smtp().start()
    alerts = email_alerts(server.port, report_url="https://intranet.example/monitor/report.html")
    config_path = setup_site(workdir, site, alerts)
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE, "Write to our <a href='https://acme.example/dpo'>Data Protection Officer</a> with questions."))
    assert check(config_path)[0] == 0
    site.set("/privacy", page(*POLICY, AI_CLAUSE, "Write to our <a href='https://acme.example/dpo'>Data Protection Officer</a> or the <a href='https://acme.example/dpa'>authority</a>."))
    assert check(config_path)[0] == 0
    first, second = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default) for m in server.messages]
    for message in (first, second):
        domain = message["Message-ID"].strip("<>").rpartition("@")[2]
        assert "." in domain and domain == SENDER.rpartition("@")[2]
    # both alerts refer to the same per-document id, so clients thread them
    assert first["References"] and first["References"] == second["References"] == first["In-Reply-To"] == second["In-Reply-To"]
    assert first["References"] not in (first["Message-ID"], second["Message-ID"])
    _, html = plain_and_html(first)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Uses your data to train AI (high)" in html  # plain words, not the category id
    assert "#c9252c" in html  # a high flag's box is red
    assert 'href="https://acme.example/dpo"' in html and "&lt;https://acme.example/dpo&gt;" not in html  # a link, not raw text
    change_ids = [r.change_id for r in sorted(rows(load_config(config_path)), key=lambda r: r.id)]
    assert f'href="https://intranet.example/monitor/report.html#change-{change_ids[0]}"' in html
    assert f"Change #{change_ids[0]} (v1→v2), detected" in plain_and_html(first)[0]  # the one numbering: id and version pair
    text, html2 = plain_and_html(second)
    assert f"See the change: https://intranet.example/monitor/report.html#change-{change_ids[1]}" in text
    assert "Uses your data" not in html2  # nothing flagged in the second change


def test_flag_boxes_follow_severity_and_direction_overrides_are_isolated(config: Config) -> None:
    medium = {**AI_FLAG, "severity": "medium", "category": "ai-third-party", "rule": "r"}
    low = {**AI_FLAG, "severity": "low", "category": "opt-out-scope", "rule": "r2"}
    diff = diff_of(added("We may share public posts with partners for their AI.", medium), added("You cannot opt out of some uses.", low),
                   added("Download the file \u202egpj.exe now."))
    rendered = render_change(config, view(diff))
    assert "Shares your data for others&#39; AI (medium)" in rendered.html and "Limits on opting out (low)" in rendered.html
    assert "#d97706" in rendered.html and "#7a8aa0" in rendered.html and "#c9252c" not in rendered.html
    assert "<bdi>Download the file \u202egpj.exe now.</bdi>" in rendered.html
    assert "\u2068Download the file \u202egpj.exe now.\u2069" in rendered.text


def test_server_down_the_alert_waits_then_arrives_once(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp()  # not started: nothing listens on its port
    config_path = setup_site(workdir, site, email_alerts(server.port))
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    code, out, _ = check(config_path)
    assert code == 0 and "alerts:" not in out
    [row] = rows(load_config(config_path))
    assert row.state == "pending" and row.attempts == 1
    assert f"cannot connect to 127.0.0.1:{server.port} (connection refused)" in (row.last_error or "")
    assert row.next_attempt_at and row.next_attempt_at > utcnow()  # backing off
    server.start()
    assert deliver(load_config(config_path)).sent == 0  # still backing off
    code, out, err = in_process("--config", str(config_path), "alerts", "retry")
    assert code == 0 and "1 sent" in out, err
    assert len(server.messages) == 1
    in_process("--config", str(config_path), "alerts", "retry")
    deliver(load_config(config_path), now=datetime.now(timezone.utc) + timedelta(days=1))
    assert len(server.messages) == 1
    [row] = rows(load_config(config_path))
    assert row.state == "sent" and row.attempts == 2 and row.last_error is None


def test_a_fresh_process_delivers_what_an_earlier_one_queued(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp()
    config_path = setup_site(workdir, site, email_alerts(server.port))
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path, "--no-alerts")
    assert [r.state for r in rows(load_config(config_path))] == ["pending"]
    server.start()
    first = run_cli("--config", str(config_path), "alerts", "retry")
    second = run_cli("--config", str(config_path), "alerts", "retry")
    assert first.code == 0 and "1 sent" in first.out, first.err
    assert second.code == 0 and "0 sent" in second.out
    assert len(server.messages) == 1


def test_racing_senders_never_send_an_alert_twice(smtp: Callable[..., SmtpServer], workdir: Path) -> None:
    server = smtp().start()
    path = write_config(workdir, [{"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": "https://acme.example/privacy"}],
                        alerts=email_alerts(server.port))
    config = load_config(path)
    with Store.open(config) as store:
        store.sync_targets(config.targets)
        for i in range(8):
            store.add_alerts(plan_state_alerts(config.alerts, config.targets[0], "failing" if i % 2 == 0 else "recovered", f"round {i}"))
    reports: list[Any] = []
    threads = [threading.Thread(target=lambda: reports.append(deliver(config))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.sent for r in reports) == 8
    ids = [m["Message-ID"] for m in server.messages]
    assert len(ids) == 8 and len(set(ids)) == 8
    assert {r.state for r in rows(config)} == {"sent"}


def test_a_claim_left_by_a_dead_sender_is_taken_over_after_its_lease(smtp: Callable[..., SmtpServer], workdir: Path) -> None:
    server = smtp().start()
    path = write_config(workdir, [{"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": "https://acme.example/privacy"}],
                        alerts=email_alerts(server.port))
    config = load_config(path)
    with Store.open(config) as store:
        store.sync_targets(config.targets)
        store.add_alerts(plan_state_alerts(config.alerts, config.targets[0], "failing", "3 failures"))
        lease = to_timestamp(datetime.now(timezone.utc) + timedelta(minutes=5))
        store.db.execute("update alerts set state = 'sending', attempts = 1, next_attempt_at = ?", [lease])
        store.db.conn.commit()
    assert deliver(config).sent == 0  # the claim still holds
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(minutes=6)).sent == 1
    assert len(server.messages) == 1
    assert server.messages[0]["Subject"] == "[privacy monitor] Acme · Privacy Policy is failing"


def test_starttls_with_a_certificate_only_the_test_trusts(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    import trustme

    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(workdir / "test-ca.pem"))
    server = smtp(tls_context=context, require_starttls=True).start()
    tls = email_alerts(server.port, smtp={"security": "starttls", "ca_file": "test-ca.pem"})
    config_path = setup_site(workdir, site, tls)
    code, out, err = in_process("--config", str(config_path), "alerts", "test", "--channel", "email")
    assert code == 0, err
    assert len(server.messages) == 1 and server.messages[0]["Subject"] == "[privacy monitor] test message"
    untrusted = setup_site(workdir, site, email_alerts(server.port, smtp={"security": "starttls"}))
    code, _, err = in_process("--config", str(untrusted), "alerts", "test")
    assert code == 1 and "TLS certificate is not trusted" in err and "alerts.smtp.ca_file" in err
    assert len(server.messages) == 1


def test_failing_and_recovered_are_alerts_too(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp().start()
    config_path = write_config(
        workdir, [{"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": site.url("/privacy")}],
        defaults={"failure_threshold": 1, "retries": 0}, alerts=email_alerts(server.port),
    )
    check(config_path)  # 404: not found
    site.set("/privacy", page(*POLICY))
    check(config_path)
    subjects = [m["Subject"] for m in server.messages]
    assert subjects == ["[privacy monitor] Acme · Privacy Policy is failing", "[privacy monitor] Acme · Privacy Policy recovered"]
    text, _ = plain_and_html(server.messages[0])
    assert "http-404" in text


def test_hostile_page_is_escaped_in_the_email(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp().start()
    config_path = setup_site(workdir, site, email_alerts(server.port))
    check(config_path)
    hostile = [
        "&lt;script&gt;alert(1)&lt;/script&gt; We may use your data in new ways.",
        "Write to us.\r\nBcc: victim@example.com\r\n",
        "clause " * 15000,
    ]
    site.set("/privacy", page(*POLICY, *hostile))
    assert check(config_path)[0] == 0
    [message] = server.messages
    assert server.mailbox.envelopes[0].rcpt_tos == [ALICE] and message["Bcc"] is None
    text, html = plain_and_html(message)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[clause cut here:" in text and len(message.as_bytes()) < 60_000


def test_digest_gathers_changes_into_one_email(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp().start()
    config_path = setup_site(workdir, site, email_alerts(server.port, mode="digest", digest_schedule="0 8 * * *"))
    check(config_path)
    site.set("/privacy", page(*POLICY, "We now keep logs for two years."))
    code, out, _ = check(config_path)
    assert code == 0 and server.messages == []  # held for the digest
    site.set("/privacy", page(*POLICY, "We now keep logs for two years.", AI_CLAUSE))
    check(config_path)
    config = load_config(config_path)
    report = deliver(config)
    assert report.sent == 0 and report.held == 2
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1, minutes=1)
    assert deliver(config, now=tomorrow).sent == 2
    [message] = server.messages
    assert message["Subject"] == "[privacy monitor] digest: 2 changes in 1 document (1 flag)"
    text, _ = plain_and_html(message)
    assert "AI training clause added" in text and "1 added" in text
    assert deliver(config, now=tomorrow + timedelta(days=1)).sent == 0
    assert len(server.messages) == 1
    assert {r.message_id for r in rows(config)} == {message["Message-ID"]}


def test_webhook_receives_the_documented_json_once(workdir: Path, site: Site, hook: Callable[..., Hook]) -> None:
    receiver = hook(statuses=[503])  # down once, then fine
    config_path = setup_site(workdir, site, {"webhook": {"url": receiver.url, "headers": {"Authorization": "Bearer s3cret"}}})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path)
    config = load_config(config_path)
    [row] = rows(config)
    assert row.state == "pending" and "HTTP 503" in (row.last_error or "")
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(minutes=5)).sent == 1
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0
    [(headers, body)] = receiver.requests
    assert headers["content-type"] == "application/json" and headers["authorization"] == "Bearer s3cret"
    payload = json.loads(body)
    assert payload["event"] == "change"
    assert payload["target"] == {"id": "acme-privacy", "service": "Acme", "document": "privacy-policy", "url": site.url("/privacy"), "title": "Acme · Privacy Policy"}
    assert payload["change_id"] == row.change_id and payload["detected_at"]
    assert {"substantive", "old", "new", "signals", "changes"} <= payload.keys()
    assert payload["changes"][0]["kind"] == "added" and payload["changes"][0]["flags"][0]["category"] == "ai-training"
    assert headers["x-privacy-monitor-delivery"] == row.message_id.strip("<>")


def test_webhook_refusal_is_permanent_until_retried(workdir: Path, site: Site, hook: Callable[..., Hook]) -> None:
    receiver = hook(statuses=[404])
    config_path = setup_site(workdir, site, {"webhook": {"url": receiver.url}})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path)
    [row] = rows(load_config(config_path))
    assert row.state == "failed" and "HTTP 404" in (row.last_error or "")
    code, out, _ = in_process("--config", str(config_path), "alerts", "list", "--state", "failed")
    assert code == 0 and f"{row.id}" in out and "webhook" in out and "failed" in out and "HTTP 404" in out
    code, out, _ = in_process("--config", str(config_path), "alerts", "retry", "--id", str(row.id))
    assert code == 0 and "1 sent" in out
    assert len(receiver.requests) == 1


def test_a_refused_recipient_is_a_permanent_failure(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp().start()
    server.mailbox.refuse = ("nobody@example.org",)
    config_path = setup_site(workdir, site, email_alerts(server.port), alerts_to=["nobody@example.org"])
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    assert check(config_path)[0] == 0
    [row] = rows(load_config(config_path))
    assert row.state == "failed" and row.recipients == ("nobody@example.org",)
    assert f"127.0.0.1:{server.port} refused every recipient (nobody@example.org)" in (row.last_error or "")
    assert deliver(load_config(config_path), now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0  # not retried by itself
    code, _, err = in_process("--config", str(config_path), "alerts", "retry")
    assert code == 1 and "refused every recipient" in err
    assert server.messages == []


def test_alerts_held_through_an_outage_go_out_oldest_first(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    """An alert that has failed many times waits longer than a newer one: once the server is
    back, the newer must not overtake it (per target, alerts follow their changes' order)."""
    server = smtp()  # down
    site.set("/a", page(*POLICY))
    site.set("/b", page(*POLICY))
    specs = [{"id": t, "service": t.upper(), "document": "terms", "url": site.url(f"/{t}")} for t in ("a", "b")]
    config_path = write_config(workdir, specs, alerts=email_alerts(server.port))
    config = load_config(config_path)
    check(config_path)
    site.set("/a", page(*POLICY, "We now keep logs for two years."))
    check(config_path, "--no-alerts", "a")
    t0 = datetime.now(timezone.utc)
    for minutes in (0, 1, 3):  # the first alert fails three times: its backoff grows
        assert deliver(config, now=t0 + timedelta(minutes=minutes)).failed == 1
    site.set("/a", page(*POLICY, "We now keep logs for two years.", AI_CLAUSE))
    check(config_path, "--no-alerts", "a")
    site.set("/b", page(*POLICY, AI_CLAUSE))
    check(config_path, "--no-alerts", "b")
    deliver(config, now=t0 + timedelta(minutes=3, seconds=10))  # still down: the new ones fail or wait too
    server.start()
    for seconds in range(15, 3 * 3600, 5):  # the daemon's sender, every 5s, until the outbox is empty
        deliver(config, now=t0 + timedelta(minutes=3, seconds=seconds))
        if len(server.messages) == 3:
            break
    by_age = sorted(rows(config), key=lambda r: r.id)
    assert [r.state for r in by_age] == ["sent"] * 3
    assert [m["Message-ID"] for m in server.messages] == [r.message_id for r in by_age]
    a_changes = [r.change_id for r in by_age if r.target_id == "a"]
    assert a_changes == sorted(a_changes)


# ----------------------------------------------------------------------------- commands


def test_alerts_test_against_a_closed_port_is_one_clear_line(workdir: Path, site: Site) -> None:
    port = free_port()
    config_path = setup_site(workdir, site, email_alerts(port))
    result = run_cli("--config", str(config_path), "alerts", "test")
    assert result.code == 1
    assert result.err.strip() == (
        f"error: cannot connect to 127.0.0.1:{port} (connection refused); check alerts.smtp.host/port in targets.yaml"
    )
    assert "Traceback" not in result.err


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_alerts_test_with_a_wrong_password_names_the_setting(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"monitor" and data.password == b"right"
        return AuthResult(success=ok, handled=False)

    server = smtp(authenticator=authenticator, auth_require_tls=False, auth_required=True).start()
    config_path = setup_site(workdir, site, email_alerts(server.port, smtp={"username": "monitor", "password_env": "TEST_SMTP_PASSWORD"}))
    wrong = run_cli("--config", str(config_path), "alerts", "test", env={"TEST_SMTP_PASSWORD": "wrong"})
    assert wrong.code == 1 and len(wrong.err.strip().splitlines()) == 1
    assert f"127.0.0.1:{server.port} rejected the login of monitor (535" in wrong.err
    assert "$TEST_SMTP_PASSWORD" in wrong.err
    unset = run_cli("--config", str(config_path), "alerts", "test", env={})
    assert unset.code == 1 and "environment variable TEST_SMTP_PASSWORD" in unset.err
    right = run_cli("--config", str(config_path), "alerts", "test", env={"TEST_SMTP_PASSWORD": "right"})
    assert right.code == 0, right.err
    assert len(server.messages) == 1


def test_alerts_list_formats(config: Config) -> None:
    record_change(config, POLICY, [*POLICY, AI_CLAUSE], flags={0: [ai_flag()]})
    code, out, _ = in_process("--config", str(config.path), "alerts", "list", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and [(a["channel"], a["state"]) for a in listed] == [("webhook", "pending"), ("email", "pending")]
    code, out, _ = in_process("--config", str(config.path), "alerts", "list")
    header, *lines = out.splitlines()
    assert header.split()[:6] == ["ID", "KIND", "CHANNEL", "TARGET", "CHANGE", "STATE"] and len(lines) == 2
    assert "SENT AT" in header
    code, out, _ = in_process("--config", str(config.path), "alerts", "list", "--state", "sent")
    assert code == 0 and out.strip() == "no alerts in state sent"


# ----------------------------------------------------------------------------- the daemon




def start_daemon(config_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MONITOR_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config_path), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL,
    )


def stop_daemon(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return err


@pytest.mark.slow
def test_the_daemon_delivers_once_across_a_restart(workdir: Path, site: Site, smtp: Callable[..., SmtpServer]) -> None:
    server = smtp()  # down
    config_path = setup_site(workdir, site, email_alerts(server.port))
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path, "--no-alerts")
    config = load_config(config_path)

    daemon = start_daemon(config_path)
    try:
        assert wait_for(lambda: rows(config)[0].attempts >= 1), "the daemon's sender never tried"
    finally:
        stop_daemon(daemon)
    [row] = rows(config)
    assert row.state == "pending" and "connection refused" in (row.last_error or "")

    server.start()
    assert in_process("--config", str(config_path), "alerts", "retry", "--no-send")[0] == 0  # due now, not after the backoff
    daemon = start_daemon(config_path)
    try:
        assert wait_for(lambda: len(server.messages) == 1), "the restarted daemon did not deliver"
    finally:
        stop_daemon(daemon)
    daemon = start_daemon(config_path)
    try:
        time.sleep(2 * SENDER_POLL_SECONDS)
    finally:
        stop_daemon(daemon)
    assert len(server.messages) == 1
    [row] = rows(config)
    assert row.state == "sent" and row.message_id == server.messages[0]["Message-ID"]
