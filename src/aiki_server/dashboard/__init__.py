"""The dashboard: server-rendered HTML pages (runs, a run, workers, schedules) over the
same Store as the API, with their Jinja templates and static files in this package."""

from __future__ import annotations

from pathlib import Path

from . import _login  # noqa: F401 (registers /login and /logout on the blueprint)
from ._pages import blueprint, html_error, wants_html

#: Where the pages' templates and the stylesheet and script are (the app serves these).
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

__all__ = ["STATIC", "TEMPLATES", "blueprint", "html_error", "wants_html"]
