"""boto3 clients of the supervisor, behind a factory that tests and the bench replace."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config

# botocore's own retry policy (standard mode: throttling and transient errors, with backoff):
# every call the supervisor makes is safe to repeat (reads, stops, conditional writes, and a
# restart submit that is looked up by its name first).
CONFIG = Config(
    retries={"total_max_attempts": 5, "mode": "standard"},
    connect_timeout=5,
    read_timeout=20,
    user_agent_extra="deepracer-rollouts-supervisor",
)


class Clients:
    def __init__(self, session: boto3.session.Session | None = None) -> None:
        self._session = session or boto3.session.Session()

    def _client(self, service: str) -> Any:
        return self._session.client(service, config=CONFIG)

    @cached_property
    def batch(self) -> Any:
        return self._client("batch")

    @cached_property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @cached_property
    def cloudformation(self) -> Any:
        return self._client("cloudformation")

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def sns(self) -> Any:
        return self._client("sns")


def get_clients() -> Clients:
    """Replaced by tests and the bench."""
    return Clients()
