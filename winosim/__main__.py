"""`python -m winosim ...` entry point."""

from __future__ import annotations

import sys

from winosim.cli import main

if __name__ == "__main__":
    sys.exit(main())
