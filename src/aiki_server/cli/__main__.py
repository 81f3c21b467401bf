"""``python -m aiki_server.cli``: the ``aiki`` command."""

from . import main

main()
