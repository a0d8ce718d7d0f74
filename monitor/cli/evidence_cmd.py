"""Evidence commands: export, anchor (verify FILE lives with verify in capture.py)."""

from __future__ import annotations

from pathlib import Path

import click

from .base import State, cli, config_option, echo_err, pass_state


def parse_until(text: str) -> str:
    """Like --since, but a bare date means the end of that day."""
    import re

    from ..report import parse_since

    stamp = parse_since(text)
    if re.fullmatch(r"\s*\d{4}-\d\d-\d\d\s*", text):
        stamp = stamp[:10] + "T23:59:59.999Z"
    return stamp


@cli.command()
@config_option
@click.argument("what", required=False, metavar="CHANGE_ID|TARGET_ID|TARGET_ID@N")
@click.option("--all", "everything", is_flag=True, help="Every target.")
@click.option("--since", metavar="WHEN", help="Versions observed since: 7d, 12h or a date like 2024-09-01.")
@click.option("--until", metavar="WHEN", help="Versions observed until (a date includes that day).")
@click.option("--format", "-f", "fmt", type=click.Choice(["wacz", "warc", "zip"]), default="wacz", show_default=True,
              help="wacz: replayable package; warc: plain .warc.gz; zip: folder-like bundle with README.txt.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="File to write [default: change-ID.wacz, TARGET.wacz, ...].")
@click.option("--sign", is_flag=True, help="Sign the bundle with the Ed25519 key evidence.signing_key names in targets.yaml.")
@click.option("--signing-key", type=click.Path(dir_okay=False), metavar="KEY", help="Sign with this key file instead (implies --sign).")
@click.option("--timestamp", "stamp", is_flag=True, help="Also have the signed digest time-stamped (RFC 3161) by evidence.tsa_url.")
@pass_state
def export(state: State, what: str | None, everything: bool, since: str | None, until: str | None, fmt: str, output: str | None,
           sign: bool, signing_key: str | None, stamp: bool) -> int:
    """Export evidence: the captures, texts, screenshots, diffs, flags and hash-chain links of
    a change, a version, a target or everything, in one file that `monitor verify FILE`
    checks without the database.

    \b
    Examples:
      monitor export 14 -o change-14.wacz          a change and its two versions
      monitor export linkedin-privacy@15           one version (and the change into it)
      monitor export linkedin-privacy --since 2024-09-01 --until 2024-09-30
      monitor export --all --format warc -o archive.warc.gz
      monitor export 14 --format zip               README.txt, manifest.json, files
      monitor export 14 --sign                     signed with evidence.signing_key
      monitor export 14 --sign --timestamp         and time-stamped by evidence.tsa_url
      monitor export 14 --signing-key monitor.key  signed with this key (`monitor keygen`)

    WACZ (default) opens in ReplayWeb.page and replays in pywb: our network captures are
    WARC response/request records at their original URLs, dated when this monitor fetched
    them; versions imported from the Wayback Machine or Open Terms Archive are resource
    records with their provenance and claimed date. Nothing is exported if a file or row
    no longer matches the hash chain (run `monitor verify`).

    --sign puts an Ed25519 signature of the bundle's digest in it (WACZ: the signedData
    block of datapackage-digest.json; zip: signature.json over manifest.json; WARC: a last
    record urn:monitor:signature over the bytes before it), which `monitor verify FILE
    [--key KEY.pub]` checks. --timestamp adds an RFC 3161 token from evidence.tsa_url.
    Exit 0 done, 1 the store does not verify, 2 bad input (or the TSA cannot be reached).
    """
    from ..evidence.export import export as run_export
    from ..report import parse_since

    key = None
    if sign or signing_key or stamp:
        key = _signing_key(state, signing_key)
    tsa_url = _tsa_url(state) if stamp else None
    with state.store() as store:
        done = run_export(store, what, fmt=fmt, output=Path(output) if output else None, everything=everything,
                          since=parse_since(since) if since else None, until=parse_until(until) if until else None,
                          signing_key=key, tsa_url=tsa_url)
    click.echo(f"wrote {done.path}: {done.counts}")
    if done.signature:
        click.echo(done.signature)
    return 0


def _signing_key(state: State, path: str | None) -> object:
    from ..errors import InputError
    from ..evidence.sign import load_private

    if path:
        return load_private(Path(path), where="--signing-key")
    config = state.config()
    if config.evidence.signing_key is None:
        raise InputError(f"{config.path}: evidence.signing_key: not set; add `evidence: {{signing_key: keys/monitor.key}}` "
                         "(make the key with `monitor keygen keys/monitor.key`), or pass --signing-key KEY")
    return load_private(config.evidence.signing_key, where=f"{config.path}: evidence.signing_key")


def _tsa_url(state: State) -> str:
    from ..errors import InputError

    config = state.config()
    if not config.evidence.tsa_url:
        raise InputError(f"{config.path}: evidence.tsa_url: not set; add the URL of an RFC 3161 time-stamping authority "
                         "under evidence: (tsa_url: https://freetsa.org/tsr, say), or export without --timestamp")
    return config.evidence.tsa_url


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False))
def keygen(path: str) -> int:
    """Create an Ed25519 key pair for signing exports: the private key at PATH (mode 0600),
    the public key at PATH.pub (give that to whoever checks your bundles).

    \b
    Examples:
      monitor keygen keys/monitor.key
      monitor verify change-14.wacz --key keys/monitor.key.pub

    Then name the private key in targets.yaml (`evidence: {signing_key: keys/monitor.key}`,
    relative to that file) and export with --sign. An existing key is never overwritten.
    """
    from ..evidence.sign import keygen as make_key

    private, public, finger = make_key(Path(path))
    click.echo(f"wrote {private} (private, mode 0600) and {public} (public)")
    click.echo(f"public key {finger}")
    return 0


@cli.command()
@config_option
@click.option("--to", "to", type=click.Path(dir_okay=False), help="Also append the line to this file (a log to publish or mail).")
@pass_state
def anchor(state: State, to: str | None) -> int:
    """Print the hash chain's head with the time: publish it, mail it, timestamp it.

    \b
    Examples:
      monitor anchor
      monitor anchor --to anchors.log
      monitor verify --anchor anchors.log        the archive still extends every head in it

    Whoever holds the database could rewrite it and its chain together; a head kept
    elsewhere (this line, an alert's X-Monitor-Chain header) makes that show.
    """
    from ..evidence.anchor import anchor_line, append_anchor
    from ..records import utcnow

    config = state.config()
    if not config.db_path.exists():
        echo_err(f"{config.db_path}: no database yet; nothing to anchor")
        return 2
    with state.store() as store:
        line = anchor_line(store.chain_head(), utcnow(), store.get_meta("store_id"))
    click.echo(line)
    if to:
        append_anchor(Path(to), line)
        echo_err(f"appended to {to}")
    return 0
