"""Rendering: one view of a change (view.py) and one writer per output (Markdown, text and
terminal, HTML report, email)."""
