"""Errors whose message becomes the CloudFormation event's reason.

The Provider framework reports ``str(exception)`` as the reason, so every message here is one line,
names what was wrong and what is allowed, and never carries a traceback.
"""

from __future__ import annotations


class FanoutError(Exception):
    """A failure reported to CloudFormation as-is."""

    def __init__(self, message: str) -> None:
        # One line: CloudFormation shows the reason in a single table cell.
        super().__init__(" ".join(message.split()))


class PropertyError(FanoutError):
    """A malformed or missing resource property; raised before any AWS call."""


class AssetError(FanoutError):
    """The synthesized files asset does not match the contract (docs/fanout-contract.md)."""


class StartError(FanoutError):
    """Something failed to start; everything this request started has been stopped."""


class StopError(FanoutError):
    """Some jobs of a run could not be stopped."""
