"""`monitor` command line. Each module of this package registers its own commands on the
group defined in `base`; `load_commands` imports them all (they import nothing heavy at the
top, so `monitor diff` starts fast)."""

from __future__ import annotations

import importlib

from .base import cli, main

COMMAND_MODULES = (
    "capture",  # check, validate, doctor, verify, browser
    "diff_cmd",  # diff
    "daemon_cmd",  # run, status
    "review",  # report, history, show, reflag
    "alerts_cmd",  # alerts test|list|retry
    "import_cmd",  # import wayback|ota
    "demo_cmd",  # demo
    "service_cmd",  # discover, timeline
    "targets_cmd",  # targets, add, remove
    "evidence_cmd",  # export, anchor
    "worker_cmd",  # worker (distributed fetching)
)


def load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


__all__ = ["cli", "main", "load_commands"]
