"""`monitor alerts test|list|retry`: a thin layer over monitor.alerts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from .base import State, cli, config_option, echo_err, format_option, pass_state

if TYPE_CHECKING:
    from ..alerts import AlertRow, DeliveryReport

STATE_CHOICES = ("held", "pending", "sending", "sent", "failed", "absorbed")


@cli.group(name="alerts")
def alerts_group() -> None:
    """Send a test alert, list the outbox, re-send what failed.

    \b
    Examples:
      monitor alerts test                  one test message to alerts.to (and the webhook)
      monitor alerts list --state failed   what could not be delivered, and why
      monitor alerts retry                 send failed and waiting alerts now

    Alerts are queued in the database with each change (the outbox) and delivered by
    `monitor check` at the end of its pass and by the daemon as they appear.
    """


@alerts_group.command(name="test")
@config_option
@click.option("--channel", type=click.Choice(["all", "email", "webhook", "apprise"]), default="all", show_default=True, help="Which channel to test.")
@click.option("--to", "recipients", multiple=True, metavar="ADDRESS", help="Send the test email here instead of alerts.to (repeatable).")
@pass_state
def test_cmd(state: State, channel: str, recipients: tuple[str, ...]) -> int:
    """Send a test message by email, to the webhook and to each Apprise URL.

    \b
    Examples:
      monitor alerts test
      monitor alerts test --channel email --to me@example.org
      monitor alerts test --channel webhook
      monitor alerts test --channel apprise     one message to each alerts.apprise URL

    Exit 0 when every tested channel accepted the message, 1 when one could not be
    reached or refused (the error line names the server and the setting to fix),
    2 when the channel is not configured.
    """
    from ..alerts import send_test_email
    from ..channels import send_test_webhook
    from ..errors import AlertError

    config = state.config()
    wanted = ("email", "webhook", "apprise") if channel == "all" else (channel,)
    configured = {"email": config.alerts.smtp is not None, "webhook": config.alerts.webhook is not None, "apprise": bool(config.alerts.apprise)}
    chosen = [name for name in wanted if configured[name]]
    if not chosen:
        what = {"email": "alerts.smtp", "webhook": "alerts.webhook", "apprise": "alerts.apprise"}.get(channel, "alerts.smtp, alerts.webhook or alerts.apprise")
        echo_err(f"error: {config.path}: {what} is not configured; nothing to test")
        return 2
    smtp = config.alerts.smtp
    code = 0
    for name in chosen:
        try:
            if name == "email" and smtp is not None:
                sent_to = send_test_email(config, recipients)
                click.echo(f"email: test message accepted by {smtp.host}:{smtp.port} for {', '.join(sent_to)}")
            elif name == "apprise":
                from ..channels import send_test_apprise

                schemes = send_test_apprise(config)
                click.echo(f"apprise: test message accepted by {', '.join(s + '://' for s in schemes)}")
            else:
                send_test_webhook(config)
                click.echo("webhook: test message accepted")
        except AlertError as exc:
            echo_err(f"error: {exc}")
            code = 1
    return code


@alerts_group.command(name="list")
@config_option
@click.option("--state", "states", multiple=True, type=click.Choice(STATE_CHOICES), help="Only alerts in this state (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Newest N alerts.")
@format_option("text", "json")
@pass_state
def list_cmd(state: State, states: tuple[str, ...], limit: int, fmt: str) -> int:
    """List the outbox: every queued alert and its state.

    \b
    Examples:
      monitor alerts list
      monitor alerts list --state failed --state pending
      monitor alerts list --format json | jq '.[] | select(.state != "sent")'

    States: held (a target's failing/recovered alert waiting out alerts.outage.grace),
    pending (waiting: for its first try, a retry after a failure, or the digest),
    sending (being delivered), sent, failed (refused for good; `monitor alerts retry`),
    absorbed (left out because an outage alert said it; the last column says which).
    """
    from ..alerts import list_alerts

    config = state.config()
    if not config.db_path.exists():
        click.echo("[]" if fmt == "json" else f"{config.db_path}: no database yet; no alerts")
        return 0
    with state.store() as store:
        rows = list_alerts(store, states=states, limit=limit)
    if fmt == "json":
        click.echo(json.dumps([row.to_dict() for row in rows], indent=2))
    elif not rows:
        click.echo("no alerts" + (f" in state {', '.join(states)}" if states else ""))
    else:
        click.echo(_table(rows))
    return 0


def _table(rows: list[AlertRow]) -> str:
    header = ("ID", "KIND", "CHANNEL", "TARGET", "CHANGE", "STATE", "ATTEMPTS", "SENT AT", "NEXT ATTEMPT", "LAST ERROR")
    body = [
        (
            str(r.id), r.kind, r.channel, r.target_id or "-", str(r.change_id or "-"), r.state, str(r.attempts),
            (r.sent_at or "-")[:19].replace("T", " "),
            (r.next_attempt_at or "-")[:19].replace("T", " ") if r.state in ("held", "pending", "sending") else "-",
            _short(r.last_error or "-", 70),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths)) + "  " + line[-1] for line in (header, *body)
    )


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@alerts_group.command(name="retry")
@config_option
@click.option("--id", "ids", type=int, multiple=True, metavar="N", help="Only this alert (repeatable).")
@click.option("--no-send", is_flag=True, help="Only re-queue; the daemon or the next check sends them.")
@pass_state
def retry_cmd(state: State, ids: tuple[int, ...], no_send: bool) -> int:
    """Send failed and backed-off alerts again, now.

    \b
    Examples:
      monitor alerts retry              after fixing the mail server or the password
      monitor alerts retry --id 42
      monitor alerts retry --no-send    leave the sending to the daemon

    An alert is sent at most once: those already sent are never re-sent. Change emails
    waiting for the digest stay held until it is due. Exit 0 when nothing failed,
    1 when an alert could not be delivered (it stays queued; see `monitor alerts list`).
    """
    from ..alerts import deliver_pending, requeue

    config = state.config()
    if not config.db_path.exists():
        click.echo(f"{config.db_path}: no database yet; no alerts")
        return 0
    with state.store() as store:
        requeued = requeue(store, ids=ids)
        if no_send:
            click.echo(f"alerts: {requeued} re-queued")
            return 0
        report = deliver_pending(store, config)
    click.echo(_report_line(requeued, report))
    for error in report.errors:
        echo_err(f"error: {error}")
    return 1 if report.failed else 0


def _report_line(requeued: int, report: DeliveryReport) -> str:
    line = f"alerts: {requeued} re-queued, {report.sent} sent, {report.failed} failed, {report.pending} pending"
    if report.held:
        line += f" ({report.held} held for the digest)"
    return line
