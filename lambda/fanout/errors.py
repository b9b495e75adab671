"""Errors whose message becomes the CloudFormation event's reason.

The Provider framework reports ``str(exception)`` as the reason, so every message here is one line,
names what was wrong and what is allowed, and never carries a traceback.
"""

from __future__ import annotations

# The Provider framework appends its own text (the log group) to the reason, and the whole
# response to CloudFormation must stay under 4 KB: one reason is at most this many characters.
MAX_REASON = 1000
ELLIPSIS = " [...]"


def clip(text: str, limit: int) -> str:
    """``text`` on one line and at most ``limit`` characters (the cut is marked)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - len(ELLIPSIS)] + ELLIPSIS


class FanoutError(Exception):
    """A failure reported to CloudFormation as-is."""

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        # One line: CloudFormation shows the reason in a single table cell.
        super().__init__(clip(message, MAX_REASON))
        # What made it happen, in words that repeat from one poll to the next (no counters or
        # ages), so the wait-limit failure can say how often the same cause recurred.
        self.cause = clip(cause or message, 200)


class PropertyError(FanoutError):
    """A malformed or missing resource property; raised before any AWS call."""


class AssetError(FanoutError):
    """The synthesized files asset does not match the contract (docs/fanout-contract.md)."""


class StartError(FanoutError):
    """The run failed to start or to come up; everything it started has been stopped."""


class StopError(FanoutError):
    """Some jobs of a run could not be stopped."""


class PollAgainError(FanoutError):
    """Not a failure: this invocation cannot go on safely now; the next is_complete call resumes."""


class RunStoppedError(StartError):
    """The run was marked stopped (Delete, a replacing update, its own failure) while starting."""
