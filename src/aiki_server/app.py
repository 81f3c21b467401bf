"""The app for ASGI servers: ``hypercorn --worker-class trio aiki_server.app:app``.

Configured from ``AIKI_*`` environment variables (see :meth:`Settings.from_env`).
Importing this module connects to nothing: Redis is opened when the app starts serving.
"""

from ._factory import create_app
from ._settings import Settings

app = create_app(Settings.from_env())
