"""The handle a fan-out test gets on its world: fake cloud, moto S3, recorded backoff sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fanout import handler
from fanout_builders import ASSET_BUCKET, ASSET_KEY, BUCKET, PREFIX, make_event
from fanout_fakecloud import FakeCloud


class LambdaTimedOut(BaseException):
    """The Lambda runtime ending an invocation at its timeout: no except clause runs."""


@dataclass
class World:
    """Everything a handler test touches: the fake cloud, moto S3 and the recorded sleeps."""

    cloud: FakeCloud
    s3: Any
    sleeps: list[float] = field(default_factory=list)
    now: float = 0.0

    def sleep(self, seconds: float) -> None:
        """Backoff sleeps advance a fake clock, so retry budgets are real but cost no time."""
        self.sleeps.append(seconds)
        self.now += seconds

    def context(self, timeout_seconds: float) -> LambdaContext:
        """A Lambda context whose remaining time runs on the fake clock from now on."""
        return LambdaContext(self, self.now + timeout_seconds)

    def running(self) -> set[str]:
        """Run ids with anything still running: a trainer, a Batch job or a RoboMaker batch."""
        cloud = self.cloud
        runs = set(cloud.active_trainers())
        runs |= {cloud.batch_jobs[j]["jobName"] for j in cloud.active_batch_jobs()}
        runs |= {cloud.sim_batches[a]["tags"]["rollouts:run"] for a in cloud.active_sim_batches()}
        return runs

    def put_asset(self, data: bytes) -> None:
        self.s3.put_object(Bucket=ASSET_BUCKET, Key=ASSET_KEY, Body=data)

    def listing(self, prefix: str = PREFIX) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> str:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()

    def create(self, props: dict[str, Any], request_id: str = "req-1") -> dict[str, Any]:
        """on_event of a Create (plans, starts nothing)."""
        return handler.on_event(make_event("Create", props, request_id=request_id), None)

    def poll(
        self,
        props: dict[str, Any],
        on_event_result: dict[str, Any],
        request_type: str = "Create",
        *,
        event: dict[str, Any] | None = None,
        context: Any = None,
    ) -> dict[str, Any]:
        """One is_complete invocation, with the input the Provider framework builds for it: the
        request event overlaid with on_event's result."""
        base = event if event is not None else make_event(request_type, props)
        return handler.is_complete({**base, **on_event_result}, context)

    def deploy(
        self, props: dict[str, Any], request_id: str = "req-1"
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """on_event of a Create and the first is_complete (which starts the run)."""
        event = make_event("Create", props, request_id=request_id)
        created = handler.on_event(event, None)
        return created, self.poll(props, created, event=event)


@dataclass
class LambdaContext:
    world: World
    ends_at: float

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends_at - self.world.now) * 1000)
