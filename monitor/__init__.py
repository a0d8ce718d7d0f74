"""Privacy-policy change monitor.

Stages, one module each: targets (what to watch) -> fetch (get the page) -> extract (page to
clauses) -> store (record captures) -> diff (clause-level comparison) -> flags (AI-training and
opt-out clauses) -> alerts (tell people) ; schedule (the daemon) ; report (review) ; cli.
"""

__version__ = "0.1.0"
