"""Errors of the local real stack, each worded so the user knows what to do next.

The CLI prints ``str(error)`` and exits non-zero without a stack trace, so every message
says what went wrong, where to look (a log path), and what to run or install.
"""

from __future__ import annotations


class DevstackError(Exception):
    """Base class: a failure of the local stack that the user can act on."""


class ToolchainMissing(DevstackError):
    """A build tool (go, java, mvn) or a Debian package's binary is not installed."""


class BuildFailed(DevstackError):
    """Building or fetching a component failed; the message names the build log."""


class ComponentFailed(DevstackError):
    """A component did not start or did not become healthy in time."""


class NodeBusy(DevstackError):
    """Another stack's real node runs on this machine (there can be one: see nodenet)."""
