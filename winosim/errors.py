"""Typed errors. Every user-facing failure is one of these; the CLI turns them into one line and exit 2."""

from __future__ import annotations


class WinosimError(Exception):
    """Base class: a problem with the user's input that has a one-line explanation."""


class ConfigError(WinosimError, ValueError):
    """An invalid configuration value (architecture, geometry, transform, command-line option)."""


class OutputError(WinosimError):
    """An output file that cannot be written (missing folder, no permission, a directory in the way)."""


class TraceError(WinosimError):
    """A trace file that is missing, unreadable, foreign, corrupt or inconsistent with its geometry."""
