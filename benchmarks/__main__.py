"""Entry point: ``PYTHONPATH=src python -m benchmarks [--quick] [--no-peers] [--scenario NAME]``."""

from __future__ import annotations

import sys

from ._runner import main

if __name__ == "__main__":
    sys.exit(main())
