"""boto3 clients for the handler, behind a factory that tests and the bench replace.

RoboMaker is gone from current botocore; its final API model (botocore 1.40.60) sits next to this
file in ``botocore_data/robomaker/2018-06-29/`` and is put on the session's data search path.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

MODEL_DIR = Path(__file__).resolve().parent / "botocore_data"

# One attempt per botocore call: retry.Retrier is the single retry policy, so a SubmitJob whose
# response was lost is never re-sent blindly (Batch has no idempotency token).
CLIENT_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=10,
    read_timeout=60,
    user_agent_extra="deepracer-rollouts-fanout",
)


def new_session(region: str | None = None) -> boto3.session.Session:
    """A boto3 session that also knows RoboMaker's final model."""
    core = botocore.session.get_session()
    loader = core.get_component("data_loader")
    if str(MODEL_DIR) not in loader.search_paths:
        loader.search_paths.append(str(MODEL_DIR))
    return boto3.session.Session(botocore_session=core, region_name=region)


class Clients:
    """The four clients the handler uses, built on first use."""

    def __init__(self, session: boto3.session.Session | None = None, config: Config | None = None):
        self._session = session or new_session()
        self._config = config or CLIENT_CONFIG

    def _client(self, service: str) -> Any:
        return self._session.client(service, config=self._config)

    @cached_property
    def sagemaker(self) -> Any:
        return self._client("sagemaker")

    @cached_property
    def batch(self) -> Any:
        return self._client("batch")

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def robomaker(self) -> Any:
        return self._client("robomaker")


_factory: Callable[[], Clients] = Clients


def get_clients() -> Clients:
    return _factory()


def set_factory(factory: Callable[[], Clients]) -> Callable[[], Clients]:
    """Replace the factory (tests, bench); returns the previous one so it can be restored."""
    global _factory
    previous, _factory = _factory, factory
    return previous
