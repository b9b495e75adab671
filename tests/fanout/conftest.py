"""Fixtures of the fan-out tests: fake credentials, moto S3 and the fake cloud."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fanout import clients as clients_mod
from fanout import handler
from fanout.clients import Clients, new_session
from fanout.retry import Retrier
from fanout_builders import ASSET_BUCKET, ASSET_KEY, BUCKET, PREFIX, make_event
from fanout_fakecloud import REGION, FakeCloud
from moto import mock_aws


@dataclass
class World:
    """Everything a handler test touches: the fake cloud, moto S3 and the recorded sleeps."""

    cloud: FakeCloud
    s3: Any
    sleeps: list[float] = field(default_factory=list)

    def put_asset(self, data: bytes) -> None:
        self.s3.put_object(Bucket=ASSET_BUCKET, Key=ASSET_KEY, Body=data)

    def keys(self, prefix: str = PREFIX) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> str:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()

    def create(self, props: dict[str, Any], request_id: str = "req-1") -> dict[str, Any]:
        return handler.on_event(make_event("Create", props, request_id=request_id), None)

    def poll(self, props: dict[str, Any], on_event_result: dict[str, Any], request_type: str = "Create") -> dict[str, Any]:
        event = {**make_event(request_type, props), **on_event_result}
        return handler.is_complete(event, None)


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with mock_aws():
        cloud = FakeCloud()
        session = new_session(REGION)
        built = Clients(session)
        # Build each client once so every handler call shares the fake's recordings.
        for name in ("sagemaker", "batch", "robomaker"):
            cloud.attach(getattr(built, name))
        s3 = built.s3
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.create_bucket(Bucket=ASSET_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        state = World(cloud=cloud, s3=s3)
        previous = clients_mod.set_factory(lambda: built)
        monkeypatch.setattr(
            handler,
            "make_retrier",
            lambda budget: Retrier(budget_seconds=budget, sleep=state.sleeps.append, rand=lambda: 0.5),
        )
        try:
            yield state
        finally:
            clients_mod.set_factory(previous)
