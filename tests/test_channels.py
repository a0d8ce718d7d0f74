"""Apprise channels and the webhook's `text` line, delivered through the real outbox to a
real local HTTP server by the real Apprise (json:// and form:// targets), and by the real
daemon across a stop, a restart and a kill -9. Nothing is mocked."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from monitor.alerts import deliver_pending, list_alerts
from monitor.channels import apprise_channel
from monitor.feeds import change_urn
from monitor.store import Store
from monitor.targets import load_config

from .conftest import POLICY, Site, in_process, page, run_cli, wait_for, write_config
from .test_alerts import AI_CLAUSE, check, deliver, free_port, rows, setup_site
from .test_daemon import DaemonProcess, daemons, start  # noqa: F401 - daemons is a fixture

REPORT_URL = "https://reports.example.org/report.html"


class ChatServer:
    """Receives Apprise json:// and form:// notifications (and webhook JSON) on 127.0.0.1.
    Each POST is recorded when it arrives; `statuses` answers the next requests with those
    codes first; while `hold` is set the answer waits for `release`."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.hold = False
        self.arrived = threading.Event()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ctype = self.headers.get("Content-Type", "")
                fields = json.loads(body) if "json" in ctype else {k: v[0] for k, v in parse_qs(body.decode()).items()}
                status = server.statuses.pop(0) if server.statuses else 200
                if status == 200:
                    server.received.append({**fields, "path": self.path.split("?")[0], "content_type": ctype})
                server.arrived.set()
                if server.hold:
                    server.release.wait(30)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, scheme: str, path: str, **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{scheme}://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def ids(self, path: str | None = None) -> Counter[str]:
        """How often each stable id arrived (the `id:` line every message ends with)."""
        found = [m for m in self.received if path is None or m["path"] == path]
        return Counter(line[4:] for m in found for line in str(m.get("message", "")).splitlines() if line.startswith("id: "))

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.close()


def store_id(config_path: Path) -> str:
    with Store.open(load_config(config_path)) as store:
        return store.get_meta("store_id") or ""


# ----------------------------------------------------------------------------- in process


def test_json_and_form_receive_each_change_once_with_its_stable_id(workdir: Path, site: Site, chat: ChatServer) -> None:
    alerts = {"apprise": [chat.url("json", "/chat"), chat.url("form", "/push")], "report_url": REPORT_URL}
    config_path = setup_site(workdir, site, alerts)
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    code, _, err = check(config_path)
    assert code == 0, err
    config = load_config(config_path)
    [a, b] = rows(config)
    assert {a.state, b.state} == {"sent"} and {a.channel, b.channel} == {apprise_channel(u) for u in config.alerts.apprise}
    assert "json://" not in a.channel and a.recipients == ()  # no URL (nor token) in the database
    urn = change_urn(store_id(config_path), a.change_id)
    assert chat.ids("/chat") == {urn: 1} and chat.ids("/push") == {urn: 1}
    by_path = {m["path"]: m for m in chat.received}
    assert by_path["/chat"]["content_type"] == "application/json" and by_path["/push"]["content_type"].startswith("application/x-www-form-urlencoded")
    for message in by_path.values():
        assert message["title"] == "[privacy monitor] Acme · Privacy Policy changed: AI training clause added (1 flag) " + f"{REPORT_URL}#change-{a.change_id}"
        assert "Uses your data to train AI (high)" in message["message"] and f"{REPORT_URL}#change-{a.change_id}" in message["message"]
        assert message["type"] == "warning"
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0
    assert len(chat.received) == 2


def test_a_url_that_is_down_holds_only_its_own_queue_then_arrives_once(workdir: Path, site: Site, chat: ChatServer) -> None:
    port = free_port()  # nothing listens there yet
    down = f"json://127.0.0.1:{port}/down"
    config_path = setup_site(workdir, site, {"apprise": [down, chat.url("json", "/up")]})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path)
    config = load_config(config_path)
    state = {r.channel: r for r in rows(config)}
    assert state[apprise_channel(down)].state == "pending" and "apprise json://" in (state[apprise_channel(down)].last_error or "")
    assert state[apprise_channel(chat.url("json", "/up"))].state == "sent" and len(chat.received) == 1
    revived = ChatServer(port)
    try:
        assert in_process("--config", str(config_path), "alerts", "retry", "--no-send")[0] == 0
        assert deliver(config).sent == 1
        assert deliver(config, now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0
        assert list(revived.ids().values()) == [1] and revived.ids() == chat.ids()
    finally:
        revived.close()
    assert len(chat.received) == 1


def test_a_url_removed_from_the_config_fails_for_good(workdir: Path, site: Site) -> None:
    gone = f"json://127.0.0.1:{free_port()}/gone"
    config_path = setup_site(workdir, site, {"apprise": [gone]})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path, "--no-alerts")
    config_path.write_text(config_path.read_text().split("alerts:")[0])  # no alerts section at all now
    config = load_config(config_path)
    with Store.open(config) as store:
        report = deliver_pending(store, config)
    [row] = rows(config)
    assert report.gave_up == 1 and row.state == "failed" and "no longer in alerts.apprise" in (row.last_error or "")


def test_a_retry_after_the_service_refused_arrives_once(workdir: Path, site: Site, chat: ChatServer) -> None:
    chat.statuses = [503]
    config_path = setup_site(workdir, site, {"apprise": [chat.url("form", "/push")]})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(config_path)
    config = load_config(config_path)
    [row] = rows(config)
    assert row.state == "pending" and row.attempts == 1 and "apprise form://" in (row.last_error or "")
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(minutes=5)).sent == 1
    assert deliver(config, now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0
    assert list(chat.ids().values()) == [1]


def test_the_webhook_carries_a_one_line_text(workdir: Path, site: Site, chat: ChatServer) -> None:
    config_path = setup_site(workdir, site, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "report_url": REPORT_URL})
    check(config_path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE + "\nIt applies\r\nnow."))
    check(config_path)
    [payload] = chat.received
    assert payload["event"] == "change" and "\n" not in payload["text"] and "\r" not in payload["text"]
    assert payload["text"] == f"Acme · Privacy Policy changed: AI training clause added (1 flag) {REPORT_URL}#change-{payload['change_id']}"


def test_alerts_test_reaches_every_apprise_url(workdir: Path, site: Site, chat: ChatServer) -> None:
    config_path = setup_site(workdir, site, {"apprise": [chat.url("json", "/chat"), chat.url("form", "/push")]})
    code, out, err = in_process("--config", str(config_path), "alerts", "test", "--channel", "apprise")
    assert code == 0, err
    assert "apprise: test message accepted by json://, form://" in out
    assert sorted(m["path"] for m in chat.received) == ["/chat", "/push"]


@pytest.mark.parametrize("value", [["bogus://nothing"], "json://", [42]])
def test_an_unusable_apprise_url_is_one_line(workdir: Path, site: Site, value: Any) -> None:
    config_path = setup_site(workdir, site, {"apprise": value})
    result = run_cli("--config", str(config_path), "validate")
    assert result.code != 0 and "Traceback" not in result.err
    [line] = [ln for ln in (result.out + result.err).splitlines() if "alerts.apprise" in ln]
    assert "targets.yaml" in line


# ----------------------------------------------------------------------------- the daemon


def daemon_config(tmp_path: Path, site: Site, chat: ChatServer) -> Path:
    site.set("/p", page(*POLICY))
    target = {"id": "p", "service": "Acme", "document": "privacy-policy", "url": site.url("/p"), "schedule": "1s"}
    return write_config(tmp_path, [target], defaults={"jitter": 0}, alerts={"apprise": [chat.url("json", "/chat", rto="30")]})


@pytest.mark.slow
def test_the_daemon_sends_each_change_once_across_a_stop_in_flight_and_a_restart(tmp_path: Path, site: Site, chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    config = daemon_config(tmp_path, site, chat)
    first = start(daemons, config, tmp_path / "a.log")
    first.wait_event("new-version")
    chat.hold = True  # the next message arrives, then waits for its answer
    site.set("/p", page(*POLICY, AI_CLAUSE))
    assert chat.arrived.wait(60), f"the daemon never sent: {first.log.read_text()[-2000:]}"
    first.proc.send_signal(signal.SIGTERM)
    first.wait_event("daemon-signal")  # stopping, with the message in flight: only now is it answered
    chat.release.set()
    assert first.proc.wait(timeout=60) == 0, first.log.read_text()[-2000:]
    assert {r.state for r in rows(load_config(config))} == {"sent"}

    chat.hold = False
    site.set("/p", page(*POLICY, AI_CLAUSE, "We keep logs for two years."))  # a change while it is down
    second = start(daemons, config, tmp_path / "b.log")
    second.wait_event("alerts", where=lambda e: e.get("sent", 0) >= 1, timeout=60)
    assert second.stop() == 0
    cfg = load_config(config)
    with Store.open(cfg) as store:  # long after every lease: nothing is left to send again
        assert deliver_pending(store, cfg, now=datetime.now(timezone.utc) + timedelta(days=1)).sent == 0
        alerts = list_alerts(store)
    sid = store_id(config)
    assert chat.ids() == Counter({change_urn(sid, r.change_id): 1 for r in alerts}) and len(alerts) == 2
    assert {r.state for r in alerts} == {"sent"}


@pytest.mark.slow
def test_a_crash_between_delivery_and_commit_resends_at_most_once(tmp_path: Path, site: Site, chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    config = daemon_config(tmp_path, site, chat)
    d = start(daemons, config, tmp_path / "a.log")
    d.wait_event("new-version")
    chat.hold = True
    site.set("/p", page(*POLICY, AI_CLAUSE))
    assert chat.arrived.wait(60), d.log.read_text()[-2000:]
    d.stop(signal.SIGKILL)  # delivered, never recorded
    chat.hold = False
    chat.release.set()
    cfg = load_config(config)
    [row] = rows(cfg)
    assert row.state == "sending"
    again = start(daemons, config, tmp_path / "b.log")
    again.wait_event("daemon-start")
    assert again.stop() == 0
    assert wait_for(lambda: rows(cfg)[0].state == "sending")  # the lease still holds: no early resend
    with Store.open(cfg) as store:
        later = datetime.now(timezone.utc) + timedelta(hours=1)  # past the lease
        assert deliver_pending(store, cfg, now=later).sent == 1
        assert deliver_pending(store, cfg, now=later + timedelta(days=1)).sent == 0
    urn = change_urn(store_id(config), row.change_id)
    assert chat.ids() == {urn: 2}  # the one resend, with the same id for the receiver to drop
    assert rows(cfg)[0].state == "sent"


# ----------------------------------------------------------------------------- the README's example


def readme_example() -> str:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    after = text.split("<!-- feeds-and-channels-example", 1)[1]
    return after.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_feeds_and_a_json_channel(workdir: Path, site: Site, chat: ChatServer) -> None:
    """The README's feeds/channels block validates as written; then it runs with local
    addresses: the json:// channel pointed at a local receiver, the page served locally, and
    the Slack and ntfy lines left out (a test never reaches the internet)."""
    import feedparser

    example = readme_example()
    path = workdir / "targets.yaml"
    path.write_text(example)
    result = run_cli("--config", str(path), "validate")
    assert result.code == 0, result.out + result.err
    site.set("/privacy", page(*POLICY))
    text = example.replace("json://localhost:8080/", f"json://127.0.0.1:{chat.port}/").replace(
        "https://www.linkedin.com/legal/privacy-policy", site.url("/privacy"))
    text = "\n".join(line for line in text.splitlines() if "slack://" not in line and "ntfy://" not in line)
    assert text.count("127.0.0.1") == 2 and "apprise:" in text
    path.write_text(text + "\ndefaults: {engine: http, confirm_delay: 0s, retries: 0, timeout: 5s}\n")
    check(path)
    site.set("/privacy", page(*POLICY, AI_CLAUSE))
    check(path)
    [message] = chat.received
    assert message["path"] == "/hooks/privacy" and "LinkedIn · Privacy Policy changed: AI training clause added" in message["title"]
    assert "https://intranet.example.org/monitor/report.html#change-" in message["title"]
    config = load_config(path)
    with Store.open(config) as store:
        from monitor.feeds import write_feeds

        written = write_feeds(store, config)
    assert (workdir / "public" / "feeds" / "all.atom") in written
    parsed = feedparser.parse((workdir / "public" / "feeds" / "service" / "linkedin.atom").read_bytes())
    assert not parsed.bozo and len(parsed.entries) == 1
