"""Retries with exponential backoff and full jitter, and a bounded thread pool.

Throttling (the service refused the request) is always safe to retry and is retried until the
deadline runs out. The deadline belongs to the Retrier, not to one call: a Lambda invocation makes
one Retrier for its work, so all its calls together stay inside the invocation's time. Other transient failures (5xx, timeouts) may hide a request that *was*
processed, so they are retried only for calls the caller marks idempotent (reads, stops, calls with
an idempotency token, or a dedupe-then-submit unit).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from .errors import FanoutError

LOG = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalServerException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServerException",
        "InternalFailure",
        # S3's 409 on a conditional write: another conditional write of the key was in flight.
        # It says nothing of who won: try again (the retry then meets the winner's object).
        "ConditionalRequestConflict",
    }
)


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def error_message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))


def http_status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_throttle(error: BaseException) -> bool:
    return isinstance(error, ClientError) and (
        error_code(error) in THROTTLING_CODES or http_status(error) == 429
    )


def is_transient(error: BaseException) -> bool:
    if isinstance(error, ConnectionError | HTTPClientError):
        return True
    return isinstance(error, ClientError) and (
        error_code(error) in TRANSIENT_CODES or http_status(error) >= 500
    )


class ThrottledTooLongError(FanoutError):
    """Still throttled when the time budget ran out (the request was never accepted)."""


def describe_error(error: BaseException) -> str:
    """One line for a reason: our own errors as they are, service errors with their code."""
    if isinstance(error, FanoutError):
        return str(error)
    if isinstance(error, ClientError):
        op = getattr(error, "operation_name", "call")
        return f"{op} failed: {error_code(error)}: {error_message(error)}"
    return f"{type(error).__name__}: {error}"


@dataclass
class Retrier:
    """Backoff policy with one deadline, ``budget_seconds`` after construction, shared by every
    call; ``sleep``, ``rand`` and ``clock`` are injectable for tests and the bench."""

    base_delay: float = 0.2
    max_delay: float = 10.0
    budget_seconds: float = 600.0
    transient_attempts: int = 4
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    clock: Callable[[], float] = time.monotonic
    throttles: int = field(default=0, init=False)
    deadline: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.deadline = self.clock() + self.budget_seconds

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def call(self, what: str, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        deadline = self.deadline
        attempt = 0
        transient_failures = 0
        while True:
            try:
                return fn()
            except (ClientError, ConnectionError, HTTPClientError) as error:
                if is_throttle(error):
                    self.throttles += 1
                elif is_transient(error) and idempotent:
                    transient_failures += 1
                    if transient_failures >= self.transient_attempts:
                        raise
                else:
                    raise
                # Full jitter: sleep a uniform amount in [0, min(cap, base * 2^attempt)].
                delay = self.rand() * min(self.max_delay, self.base_delay * 2**attempt)
                attempt += 1
                if self.clock() + delay > deadline:
                    if is_throttle(error):
                        raise ThrottledTooLongError(
                            f"{what} was still throttled after {attempt} attempts when this "
                            f"invocation's {self.budget_seconds:.0f}s budget ran out; nothing was "
                            "started by this call",
                            cause=f"{what} was throttled",
                        ) from error
                    raise
                LOG.info("retrying %s in %.2fs after %s", what, delay, type(error).__name__)
                self.sleep(delay)


def bounded_map(fn: Callable[[T], R], items: Iterable[T], max_workers: int) -> list[R]:
    """``[fn(x) for x in items]`` on at most ``max_workers`` threads, results in input order.

    A small pool keeps per-worker calls under the service's rate instead of bursting into it.
    """
    values = list(items)
    if max_workers <= 1 or len(values) <= 1:
        return [fn(v) for v in values]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(values))) as pool:
        return list(pool.map(fn, values))
