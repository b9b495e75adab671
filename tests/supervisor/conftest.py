"""Fixtures of the supervisor's tests: a fake account and a way to run one supervision pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from supervisor import handler, observe
from supervisor_world import BUCKET, PLATFORM, TOPIC, World

SETTINGS = observe.Settings(platform=PLATFORM, bucket=BUCKET, topic_arn=TOPIC)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def supervise(world: World) -> Callable[..., dict[str, Any]]:
    """One pass of the supervisor over ``world``: the sweep, or the given event."""
    aws = world.clients()

    def run(event: dict[str, Any] | None = None) -> dict[str, Any]:
        return handler.run(
            event or {"source": "aws.events", "detail-type": "Scheduled Event"},
            aws,
            SETTINGS,
            world.now,
        )

    return run
