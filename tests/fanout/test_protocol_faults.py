"""Faults in the fan-out's record protocol: answers lost after a write took effect, S3's 409 on a
conditional write, SlowDown on a stop mark, a record that no longer parses. Each case states what
must hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fanout import files, handler, records, trainer
from fanout.errors import StartError
from fanout.retry import ThrottledTooLongError
from fanout_builders import BUCKET, PREFIX, client_error, make_asset, make_event, make_props
from fanout_world import World


def _on_write(
    monkeypatch: pytest.MonkeyPatch,
    when: Callable[[str, dict[str, Any]], bool],
    fault: Callable[..., Any],
) -> list[str]:
    """Replace the first write of a key ``when`` accepts by ``fault(real, *args, **kwargs)``."""
    real = files.write_json
    hits: list[str] = []

    def write_json(s3: Any, retry: Any, bucket: str, key: str, document: Any, **kwargs: Any) -> Any:
        if not hits and when(key, dict(document)):
            hits.append(key)
            return fault(real, s3, retry, bucket, key, document, **kwargs)
        return real(s3, retry, bucket, key, document, **kwargs)

    monkeypatch.setattr(files, "write_json", write_json)
    return hits


def test_a_submit_claim_that_landed_but_whose_answer_was_lost_is_still_ours(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the claim's PutObject takes effect and its retry then meets the changed object (412)
    def landed_then_lost(real: Any, *args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise client_error("PreconditionFailed", 412)

    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    hits = _on_write(monkeypatch, lambda key, doc: "submitAttemptAt" in doc, landed_then_lost)
    # When the first poll runs
    world.deploy(props)
    # Then it submitted the rollouts itself (not "another invocation is starting", after which
    # no poll would ever submit them)
    assert hits and world.cloud.count("SubmitJob") == 1


def test_a_409_on_creating_the_record_is_retried_and_nothing_starts_before_it_exists(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def conflict(real: Any, *args: Any, **kwargs: Any) -> Any:
        raise client_error("ConditionalRequestConflict", 409)

    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    hits = _on_write(
        monkeypatch,
        lambda key, doc: key.endswith(".json") and "/fanout/demo-" in key and "ancestors" in doc,
        conflict,
    )
    seen: list[bool] = []
    real_create = trainer.create

    def create(*args: Any, **kwargs: Any) -> Any:
        seen.append(any(k.startswith(f"{PREFIX}/fanout/demo-") for k in world.listing()))
        return real_create(*args, **kwargs)

    monkeypatch.setattr(trainer, "create", create)
    created, first = world.deploy(props)
    # The conflict said nothing of who won: this poll starts nothing, the next one does, and
    # the record exists before the trainer does.
    assert hits and first == {"IsComplete": False} and seen == []
    world.poll(props, created, event=make_event("Create", props))
    assert seen == [True]


def test_slowdown_on_a_stop_mark_makes_the_delete_wait_not_fail(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    rid = world.deploy(props)[0]["PhysicalResourceId"]

    def slow_down(real: Any, *args: Any, **kwargs: Any) -> Any:
        raise ThrottledTooLongError("s3:PutObject was still throttled (SlowDown)")

    _on_write(monkeypatch, lambda key, doc: key.endswith(f"{rid}.stop"), slow_down)
    delete = make_event("Delete", props, physical_id=rid, request_id="req-del")
    answer = handler.on_event(delete, None)
    assert answer.get("StopPending") is True  # no failure: the rest is is_complete's
    assert handler.is_complete({**delete, **answer}, None) == {"IsComplete": True}
    assert world.read(records.key(PREFIX, rid, records.STOP))
    assert world.running() == set()


def test_a_corrupt_run_record_fails_the_run_at_once_naming_it(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    rid = created["PhysicalResourceId"]
    key = records.key(PREFIX, rid)
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"{not json")
    with pytest.raises(StartError, match=f"s3://{BUCKET}/{key} is not valid JSON"):
        world.poll(props, created)
    assert world.running() == set()
