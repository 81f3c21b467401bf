"""The HTTP JSON API under ``/api/v1``: one blueprint per resource.

``runs`` (start, list, get, wait), ``control`` (cancel, pause, resume, wakeup),
``recover`` (retry failed runs, one or many; dead letters), ``events``, ``schedules``,
``workers`` (workers and registered workflows) and ``meta`` (the probes, ``/metrics``
and the OpenAPI document). Each module declares its request bodies and query
parameters as models (:mod:`aiki_server._model`); the OpenAPI document is built from
the same models.
"""

from __future__ import annotations

from quart import Quart

from . import control, events, meta, recover, runs, schedules, workers
from ._openapi import openapi_document

BLUEPRINTS = tuple(
    module.blueprint for module in (meta, runs, control, recover, events, schedules, workers)
)


def register_api(app: Quart) -> None:
    """Add every API route (and the probes) to ``app``."""
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)


__all__ = ["BLUEPRINTS", "openapi_document", "register_api"]
