"""Failure alerts that do not flood: local servers that go down together give one outage
alert and one when they are back, not one per target; an isolated failure keeps its own
failing and recovered alerts. Real servers, real checks, real SMTP and webhook."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.targets import load_config

from .conftest import POLICY, in_process, page, run_cli, wait_for, write_config
from .test_alerts import SmtpServer, email_alerts, rows, smtp  # noqa: F401 - smtp is a fixture
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


@pytest.mark.parametrize("outage, field", [({"fraction": 2}, "alerts.outage.fraction"), ({"min_target": 3}, "alerts.outage.min_target"), ({"window": "soon"}, "alerts.outage.window")])
def test_a_bad_outage_setting_is_one_line(workdir: Path, outage: dict[str, Any], field: str) -> None:
    path = write_config(workdir, [{"id": "a", "service": "A", "document": "terms", "url": "https://a.example/"}],
                        alerts={"webhook": {"url": "https://hooks.example/x"}, "outage": outage})
    result = run_cli("--config", str(path), "validate")
    assert result.code != 0 and "Traceback" not in result.err
    [line] = [ln for ln in (result.out + result.err).splitlines() if field in ln]
    assert "targets.yaml" in line


@pytest.mark.slow
def test_the_daemon_sends_one_outage_alert_and_one_when_back(tmp_path: Path, servers: list[PolicyServer], chat: ChatServer, daemons: list[DaemonProcess]) -> None:  # noqa: F811
    targets = [{"id": f"t{i}", "service": f"S{i}", "document": "terms", "url": f"http://127.0.0.1:{s.port}/terms", "schedule": "1s"}
               for i, s in enumerate(servers)]
    path = write_config(tmp_path, targets, defaults={"retries": 0, "failure_threshold": 2, "jitter": 0},
                        alerts={"webhook": {"url": f"http://127.0.0.1:{chat.port}/hook"}})
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
    assert d.stop() == 0
    assert events(chat) == ["outage", "outage-recovered"]
    assert sorted(r.kind for r in rows(load_config(path))) == ["outage", "outage-recovered"]  # nothing else queued either
