"""winosim's version, recorded in every trace, sweep manifest and run output (a core record: importing it
imports nothing else of the package)."""

from __future__ import annotations

__version__ = "0.1.0"
