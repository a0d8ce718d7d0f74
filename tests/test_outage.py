"""Failure alerts that do not flood: local servers that go down together give one outage
alert and one when they are back, not one per target; an isolated failure keeps its own
failing and recovered alerts. Real servers, real checks, real SMTP and webhook."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.store import parse_timestamp
from monitor.targets import load_config

from .conftest import POLICY, in_process, page, run_cli, wait_for, write_config
from .test_alerts import SmtpServer, deliver, email_alerts, rows, smtp  # noqa: F401 - smtp is a fixture
from .test_channels import ChatServer, chat  # noqa: F401 - chat is a fixture
from .test_daemon import DaemonProcess, daemons, start  # noqa: F401 - daemons is a fixture


class PolicyServer:
    """One policy page on its own port; `down()` closes it, `up()` listens on the same port again."""

    def __init__(self) -> None:
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        body = page(*POLICY).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def servers() -> Iterator[list[PolicyServer]]:
    made = [PolicyServer() for _ in range(6)]
    yield made
    for server in made:
        server.down()


def setup(workdir: Path, servers: list[PolicyServer], alerts: dict[str, Any]) -> Path:
    targets = [{"id": f"t{i}", "service": f"S{i}", "document": "terms", "url": f"http://127.0.0.1:{s.port}/terms"} for i, s in enumerate(servers)]
    path = write_config(workdir, targets, defaults={"retries": 0, "failure_threshold": 2}, alerts=alerts)
    in_process("--config", str(path), "check")
    return path


def check(path: Path) -> None:
    in_process("--config", str(path), "check")


def events(chat: ChatServer) -> list[str]:  # noqa: F811
    return [m["event"] for m in chat.received]


def test_servers_down_together_give_one_alert_and_one_when_back(workdir: Path, servers: list[PolicyServer], smtp: Callable[..., SmtpServer], chat: ChatServer) -> None:  # noqa: F811
    mail = smtp().start()
    path = setup(workdir, servers, {**email_alerts(mail.port), "webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}})
    for server in servers:
        server.down()
    check(path)
    check(path)  # every target is now failing (two consecutive failures)
    check(path)
    assert events(chat) == ["outage"]
    outage = chat.received[0]["outage"]
    n = outage["failing"]  # as many as had failed when the test first held: 5 of the 6 checked by then
    assert outage["kind"] == "network" and 5 <= n <= 6 and outage["checked"] == 6 and len(outage["targets"]) == n
    assert chat.received[0]["text"] == f"{n} of 6 targets failing with network" and chat.received[0]["target"] is None
    assert [m["Subject"] for m in mail.messages] == [f"[privacy monitor] {n} of 6 targets failing with network"]
    code, out, _ = in_process("--config", str(path), "status")
    assert out.count("failing") >= 6  # the targets are failing all the same; only the alerts are one

    for server in servers:
        server.up()
    check(path)
    check(path)
    check(path)
    assert events(chat) == ["outage", "outage-recovered"]  # those not checked again when it ended recover quietly
    assert set(chat.received[1]["outage"]["waiting"]) <= {f"t{i}" for i in range(6)}
    assert [m["Subject"] for m in mail.messages][1:] == ["[privacy monitor] network outage over"]
    body = mail.messages[1].get_body(("plain",)).get_content()
    assert "network failures of 6 targets" in body
    assert {r.state for r in rows(load_config(path))} == {"sent"}


def test_an_isolated_failure_keeps_its_own_alerts(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}})
    servers[2].down()
    check(path)
    check(path)
    assert events(chat) == ["failing"] and chat.received[0]["target"]["id"] == "t2"
    servers[2].up()
    check(path)
    assert events(chat) == ["failing", "recovered"]


def test_a_target_still_down_when_the_outage_ends_is_alerted_on_its_own(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}})
    for server in servers:
        server.down()
    check(path)
    check(path)
    for server in servers[1:]:
        server.up()
    check(path)
    check(path)  # t0's first check after the outage ended
    assert events(chat) == ["outage", "outage-recovered", "failing"]
    assert "t0" in chat.received[1]["outage"]["waiting"] and chat.received[2]["target"]["id"] == "t0"
    assert "still failing after the network outage ended" in chat.received[2]["detail"]
    servers[0].up()
    check(path)
    assert events(chat) == ["outage", "outage-recovered", "failing", "recovered"]


def test_the_thresholds_are_configurable(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"min_targets": 2, "fraction": 0.3, "window": "1h"}})
    for server in servers[:2]:
        server.down()
    check(path)
    check(path)
    assert events(chat) == ["outage"] and chat.received[0]["outage"]["failing"] == 2


@pytest.mark.parametrize("outage, field", [({"fraction": 2}, "alerts.outage.fraction"), ({"min_target": 3}, "alerts.outage.min_target"), ({"window": "soon"}, "alerts.outage.window"),
                                           ({"grace": "soon"}, "alerts.outage.grace"), ({"grace": "20m", "window": "10m"}, "alerts.outage.grace")])
def test_a_bad_outage_setting_is_one_line(workdir: Path, outage: dict[str, Any], field: str) -> None:
    path = write_config(workdir, [{"id": "a", "service": "A", "document": "terms", "url": "https://a.example/"}],
                        alerts={"webhook": {"url": "https://hooks.example/x"}, "outage": outage})
    result = run_cli("--config", str(path), "validate")
    assert result.code != 0 and "Traceback" not in result.err
    [line] = [ln for ln in (result.out + result.err).splitlines() if field in ln]
    assert "targets.yaml" in line


def held_then(path: Path, *, no_alerts: bool = False) -> None:
    in_process("--config", str(path), "check", *(["--no-alerts"] if no_alerts else []))


def test_a_failing_alert_is_held_for_the_grace_then_sent(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "5m"}})
    config = load_config(path)
    servers[2].down()
    held_then(path, no_alerts=True)
    held_then(path, no_alerts=True)  # t2 enters the failing state; its alert waits out the grace
    [row] = [r for r in rows(config) if r.kind == "failing"]
    created = parse_timestamp(row.created_at)
    assert row.state == "held" and row.target_id == "t2" and parse_timestamp(row.next_attempt_at or "") - created == timedelta(minutes=5)
    code, out, _ = in_process("--config", str(path), "alerts", "list", "--state", "held")
    assert code == 0 and "held until" in out and "t2" in out
    deliver(config, now=created + timedelta(minutes=4))
    assert events(chat) == [] and rows(config)[0].state == "held"
    deliver(config, now=created + timedelta(minutes=5, seconds=1))  # no outage came: it is an isolated failure
    assert events(chat) == ["failing"] and chat.received[0]["target"]["id"] == "t2"
    assert [r.state for r in rows(config) if r.kind == "failing"] == ["sent"]


def test_an_outage_declared_within_the_grace_absorbs_the_held_failing_alerts(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "5m"}})
    config = load_config(path)
    servers[0].down()
    servers[1].down()
    held_then(path, no_alerts=True)
    held_then(path, no_alerts=True)  # t0 and t1 are failing before the others fail: their alerts are held
    assert sorted((r.target_id, r.state) for r in rows(config)) == [("t0", "held"), ("t1", "held")]
    for server in servers[2:]:
        server.down()
    check(path)  # five of six fail alike: the outage opens and says it for t0 and t1 too
    check(path)
    assert events(chat) == ["outage"]
    absorbed = [r for r in rows(config) if r.state == "absorbed"]
    assert sorted((r.kind, r.target_id) for r in absorbed) == [("failing", "t0"), ("failing", "t1")]
    assert all("absorbed into the network outage alert" in (r.last_error or "") for r in absorbed)
    code, out, _ = in_process("--config", str(path), "alerts", "list", "--state", "absorbed")
    assert code == 0 and out.count("absorbed into the network outage alert") == 2
    deliver(config, now=parse_timestamp(absorbed[0].created_at) + timedelta(hours=1))  # never sent, however late
    for server in servers:
        server.up()
    check(path)
    check(path)
    assert events(chat) == ["outage", "outage-recovered"]  # t0 and t1 recover quietly, like the others
    assert {r.state for r in rows(config)} == {"sent", "absorbed"}


def test_the_end_of_an_outage_absorbs_held_recovered_alerts(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "5m"}})
    config = load_config(path)
    servers[0].down()
    check(path)
    check(path)  # t0 alone: its failing alert goes out at the end of the pass
    assert events(chat) == ["failing"]
    for server in servers[1:]:
        server.down()
    check(path)
    assert events(chat) == ["failing", "outage"]
    servers[0].up()
    held_then(path, no_alerts=True)  # t0 recovers while the outage is open: its alert is held
    assert [(r.target_id, r.state) for r in rows(config) if r.kind == "recovered"] == [("t0", "held")]
    for server in servers[1:]:
        server.up()
    check(path)
    assert events(chat) == ["failing", "outage", "outage-recovered"]
    assert chat.received[2]["outage"]["recovered"] == ["t0"]
    [row] = [r for r in rows(config) if r.kind == "recovered"]
    assert row.state == "absorbed" and "absorbed into the network outage-over alert" in (row.last_error or "")


def test_a_target_back_within_the_grace_after_the_outage_ended_is_its_tail(workdir: Path, servers: list[PolicyServer], chat: ChatServer) -> None:  # noqa: F811
    path = setup(workdir, servers, {"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "5m"}})
    config = load_config(path)
    for server in servers:
        server.down()
    check(path)
    check(path)
    for server in servers[1:]:
        server.up()
    check(path)  # the outage ends; t0 is left to its next check
    held_then(path, no_alerts=True)  # which fails: its own alert is held
    assert [(r.target_id, r.state) for r in rows(config) if r.kind == "failing"] == [("t0", "held")]
    servers[0].up()
    check(path)  # back within the grace: the outage's tail, not a failure of its own
    assert events(chat) == ["outage", "outage-recovered"]
    [row] = [r for r in rows(config) if r.kind == "failing"]
    assert row.state == "absorbed" and "back within the grace after the network outage ended" in (row.last_error or "")
    assert not [r for r in rows(config) if r.kind == "recovered"]


def outbox_settled(path: Path) -> bool:
    """Nothing held, waiting or being sent: every alert is sent, failed or absorbed."""
    return all(r.state in ("sent", "failed", "absorbed") for r in rows(load_config(path)))


@pytest.mark.slow
def test_the_daemon_sends_one_outage_alert_and_one_when_back(tmp_path: Path, servers: list[PolicyServer], chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    targets = [{"id": f"t{i}", "service": f"S{i}", "document": "terms", "url": f"http://127.0.0.1:{s.port}/terms", "schedule": "1s"}
               for i, s in enumerate(servers)]
    path = write_config(tmp_path, targets, defaults={"retries": 0, "failure_threshold": 2, "jitter": 0},
                        alerts={"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "30s"}})
    d = start(daemons, path, tmp_path / "daemon.log")
    d.wait_event("new-version", count=6, timeout=60)
    for server in servers:
        server.down()
    d.wait_event("failing", count=6, timeout=60)  # every target entered the failing state
    assert wait_for(lambda: "outage" in events(chat), timeout=30)
    for server in servers:
        server.up()
    d.wait_event("recovered", count=6, timeout=90)
    assert wait_for(lambda: "outage-recovered" in events(chat), timeout=30)
    assert wait_for(lambda: outbox_settled(path), timeout=90)  # a held alert not absorbed would be sent by now
    assert d.stop() == 0
    assert events(chat) == ["outage", "outage-recovered"]
    outbox = rows(load_config(path))
    assert sorted(r.kind for r in outbox if r.state != "absorbed") == ["outage", "outage-recovered"]  # nothing else queued either
    assert all(r.kind in ("failing", "recovered") and "absorbed into the network outage" in (r.last_error or "") for r in outbox if r.state == "absorbed")


@pytest.mark.slow
def test_the_daemon_sends_only_the_outage_alert_when_servers_go_down_one_by_one(tmp_path: Path, servers: list[PolicyServer], chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    targets = [{"id": f"t{i}", "service": f"S{i}", "document": "terms", "url": f"http://127.0.0.1:{s.port}/terms", "schedule": "1s"}
               for i, s in enumerate(servers)]
    path = write_config(tmp_path, targets, defaults={"retries": 0, "failure_threshold": 2, "jitter": 0},
                        alerts={"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}})  # the default grace (2m)
    d = start(daemons, path, tmp_path / "daemon.log")
    d.wait_event("new-version", count=6, timeout=60)
    for i, server in enumerate(servers):
        server.down()
        d.wait_event("failing", count=i + 1, timeout=60)  # each is failing before the next goes down
    assert wait_for(lambda: "outage" in events(chat), timeout=30)
    for i, server in enumerate(servers):
        server.up()
        d.wait_event("recovered", count=i + 1, timeout=90)  # and back one by one
    assert wait_for(lambda: "outage-recovered" in events(chat), timeout=30)
    assert wait_for(lambda: outbox_settled(path), timeout=60)
    assert d.stop() == 0
    assert events(chat) == ["outage", "outage-recovered"]
    outbox = rows(load_config(path))
    into_outage = sorted(r.target_id or "" for r in outbox if r.state == "absorbed" and "outage alert of" in (r.last_error or ""))
    assert into_outage == ["t0", "t1", "t2", "t3"]  # failing before the fifth made it an outage; said by the outage alert
    # the outage ends once fewer than five fail; those still down fail once more and are back
    # one by one within the grace: the outage's tail, said by the outage-over alert
    assert all(r.kind == "failing" and ("outage alert of" in (r.last_error or "") or "after the network outage ended" in (r.last_error or ""))
               for r in outbox if r.state == "absorbed")
    assert sorted(r.kind for r in outbox if r.state != "absorbed") == ["outage", "outage-recovered"]


@pytest.mark.slow
def test_the_daemon_sends_an_isolated_failure_after_the_grace(tmp_path: Path, servers: list[PolicyServer], chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    targets = [{"id": f"t{i}", "service": f"S{i}", "document": "terms", "url": f"http://127.0.0.1:{s.port}/terms", "schedule": "1s"}
               for i, s in enumerate(servers)]
    path = write_config(tmp_path, targets, defaults={"retries": 0, "failure_threshold": 2, "jitter": 0},
                        alerts={"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}, "outage": {"grace": "3s"}})
    d = start(daemons, path, tmp_path / "daemon.log")
    d.wait_event("new-version", count=6, timeout=60)
    servers[2].down()
    d.wait_event("failing", timeout=60)
    assert wait_for(lambda: "failing" in events(chat), timeout=60)
    servers[2].up()
    d.wait_event("recovered", timeout=60)
    assert wait_for(lambda: "recovered" in events(chat), timeout=60)
    assert wait_for(lambda: outbox_settled(path), timeout=60)
    assert d.stop() == 0
    assert events(chat) == ["failing", "recovered"] and {m["target"]["id"] for m in chat.received} == {"t2"}
    for row in rows(load_config(path)):  # each waited out its grace, then went
        assert row.state == "sent" and parse_timestamp(row.sent_at or "") - parse_timestamp(row.created_at) >= timedelta(seconds=3)
