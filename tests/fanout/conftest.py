"""Fixtures of the fan-out tests: fake credentials, moto S3 and the fake cloud."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from fanout import clients as clients_mod
from fanout import common
from fanout.clients import Clients, new_session
from fanout.retry import Retrier
from fanout_builders import ASSET_BUCKET, BUCKET
from fanout_fakecloud import REGION, FakeCloud
from fanout_world import World
from moto import mock_aws

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: wall_clock() at the fake clock's 0


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_credentials(monkeypatch)


def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
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


class SharedClients:
    """The four botocore clients, built once per session: loading the service models (SageMaker's
    alone is megabytes of JSON) for every test cost more than most tests. The fake-cloud handlers
    registered on them answer for whichever FakeCloud the current test set."""

    def __init__(self) -> None:
        self.cloud: FakeCloud | None = None
        built = Clients(new_session(REGION))
        self.clients = {name: getattr(built, name) for name in SERVICES}
        for name in ("sagemaker", "batch", "robomaker"):
            events = self.clients[name].meta.events
            events.register("before-parameter-build", FakeCloud.remember_params)
            events.register("before-call", self._answer)

    def _answer(self, **kwargs: object) -> object:
        assert self.cloud is not None, "a fake-cloud client was used outside a test's world"
        return self.cloud.answer(**kwargs)

    def for_test(self, cloud: FakeCloud) -> Clients:
        """A fresh Clients wrapper (tests may swap its clients) around the shared clients."""
        self.cloud = cloud
        wrapper = Clients(new_session(REGION))
        wrapper.__dict__.update(self.clients)
        return wrapper


SERVICES = ("sagemaker", "batch", "robomaker", "s3")


@pytest.fixture(scope="session")
def shared_clients() -> Iterator[SharedClients]:
    with pytest.MonkeyPatch.context() as patch:
        _fake_credentials(patch)  # the clients resolve their credentials when built
        yield SharedClients()


@contextmanager
def fake_world(monkeypatch: pytest.MonkeyPatch, shared: SharedClients) -> Iterator[World]:
    """moto S3, the fake cloud and a fake clock, wired into the handler; undone on exit."""
    with mock_aws():
        cloud = FakeCloud()
        built = shared.for_test(cloud)
        s3 = built.s3
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.create_bucket(
            Bucket=ASSET_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        state = World(cloud=cloud, s3=s3)
        cloud.clock = lambda: state.now
        # Wall time (PlannedAt, the wait limit, the attempt horizon) runs on the fake clock.
        monkeypatch.setattr(common, "wall_clock", lambda: EPOCH + state.now)
        previous = clients_mod.set_factory(lambda: built)
        monkeypatch.setattr(
            common,
            "make_retrier",
            lambda budget: Retrier(
                budget_seconds=budget, sleep=state.sleep, rand=lambda: 0.5, clock=lambda: state.now
            ),
        )
        try:
            yield state
        finally:
            clients_mod.set_factory(previous)
            shared.cloud = None


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, shared_clients: SharedClients) -> Iterator[World]:
    with fake_world(monkeypatch, shared_clients) as state:
        yield state
