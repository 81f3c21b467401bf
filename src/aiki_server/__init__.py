"""The Aiki server: the HTTP JSON API, probes and metrics, over the same Redis as the SDK.

``create_app(settings)`` returns the Quart-Trio app (served by ``hypercorn --worker-class
trio aiki_server.app:app``); ``serve_server`` runs it inside your own trio program; the
``aiki`` command line is :mod:`aiki_server.cli`.
"""

from ._factory import create_app
from ._serve import ServerHandle, serve_server
from ._settings import Settings

__all__ = ["ServerHandle", "Settings", "create_app", "serve_server"]
