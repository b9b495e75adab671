"""Fault matrix, races: CloudFormation requests interleaved with a start in flight, a Lambda
killed between two calls, start attempts whose outcome is unknown, runs left by stale polls.

The Provider framework keeps calling ``is_complete`` for a request CloudFormation has moved on
from (a cancelled update rolls back while the old update's waiter still runs: aws/aws-cdk#31541),
and a Delete can be processed while a Create is mid-start. Each case states what must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fanout import batch_backend, handler, records, robomaker_backend, trainer
from fanout.errors import StartError
from fanout.retry import Retrier
from fanout_builders import BUCKET, PREFIX, make_asset, make_event, make_props, make_update
from fanout_world import LambdaTimedOut, World

# The documented value (README, "The fan-out"): a start attempt whose outcome is unknown is
# watched for 38 minutes, the run's wait limit.
ATTEMPT_HORIZON = 38 * 60.0
POLL_INTERVAL = 30.0  # the Provider's query interval


def _after(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, action: Callable[[], None]
) -> None:
    """Run ``action`` once, right after the first real call of ``module.name`` returned."""
    real = getattr(module, name)
    pending = [action]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if pending:
            pending.pop()()
        return result

    monkeypatch.setattr(module, name, wrapped)


def _killed_after(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    def die() -> None:
        raise LambdaTimedOut

    _after(monkeypatch, module, name, die)


def _delete(props: dict[str, Any], rid: str) -> dict[str, Any]:
    return make_event("Delete", props, physical_id=rid, request_id="req-del")


def _rollouts_started(world: World) -> int:
    return world.cloud.count("SubmitJob") + world.cloud.count("StartSimulationJobBatch")


# ------------------------------------------------------------------ Delete while a start is in flight


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_a_create_polled_after_its_delete_reported_starts_nothing(
    world: World, backend: str
) -> None:
    props = make_props(3, backend)
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    rid = created["PhysicalResourceId"]

    assert handler.on_event(_delete(props, rid), None) == {"PhysicalResourceId": rid}
    with pytest.raises(StartError, match="stopped while starting: the resource was deleted"):
        world.poll(props, created)

    assert world.cloud.count("CreateTrainingJob") == 0 and _rollouts_started(world) == 0
    assert world.running() == set()


@pytest.mark.parametrize(
    ("backend", "module", "call"),
    [
        ("batch", trainer, "create"),
        ("batch", batch_backend, "submit"),
        ("robomaker", trainer, "create"),
        ("robomaker", robomaker_backend, "ensure_started"),
    ],
)
def test_a_delete_that_lands_during_a_start_call_is_followed_by_a_stop(
    world: World, monkeypatch: pytest.MonkeyPatch, backend: str, module: Any, call: str
) -> None:
    """The Delete reports success while the start call is in flight; the poll checks the mark
    after the call, stops what it started and starts nothing more."""
    props = make_props(3, backend)
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    rid = created["PhysicalResourceId"]
    deleted: list[dict[str, Any]] = []
    _after(
        monkeypatch,
        module,
        call,
        lambda: deleted.append(handler.on_event(_delete(props, rid), None)),
    )

    with pytest.raises(StartError, match="stopped while starting: the resource was deleted"):
        world.poll(props, created)

    assert deleted and "StopPending" not in deleted[0]
    assert world.running() == set(), "nothing of the deleted run is left running"
    if call == "create":
        assert _rollouts_started(world) == 0, "nothing started after the mark was seen"


# ------------------------------------------------------------------ cancelled update + rollback


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_a_cancelled_update_whose_poll_outlives_the_rollback_starts_nothing(
    world: World, backend: str
) -> None:
    old = make_props(2, backend)
    world.put_asset(make_asset(old["Worlds"]))
    x = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "WaitFor": "RUNNING"}
    to_y = make_update(new, old, x, "req-2")
    y = handler.on_event(to_y, None)
    # Cancelled before Y's first poll: CloudFormation rolls back, naming Y.
    back = make_update(old, new, y["PhysicalResourceId"], "req-rollback")
    z = handler.on_event(back, None)
    assert world.poll(old, z, event=back)["IsComplete"] is True

    with pytest.raises(StartError, match=f"run {z['PhysicalResourceId']} replaced it"):
        world.poll(new, y, event=to_y)  # the waiter of the cancelled update, still polling

    assert world.running() == {z["PhysicalResourceId"]}
    handler.on_event(_delete(new, y["PhysicalResourceId"]), None)  # the rollback's cleanup
    assert world.running() == {z["PhysicalResourceId"]}


def test_a_rollback_that_lands_while_the_cancelled_update_creates_its_trainer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollback's run comes up while Y's CreateTrainingJob is in flight; Y sees its mark
    after the call and stops itself; only the rollback's run remains."""
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    x = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "WaitFor": "RUNNING"}
    to_y = make_update(new, old, x, "req-2")
    y = handler.on_event(to_y, None)
    back = make_update(old, new, y["PhysicalResourceId"], "req-rollback")
    rolled_back: list[dict[str, Any]] = []

    def rollback() -> None:
        z = handler.on_event(back, None)
        rolled_back.append(z)
        assert world.poll(old, z, event=back)["IsComplete"] is True

    _after(monkeypatch, trainer, "create", rollback)
    with pytest.raises(StartError, match="replaced it"):
        world.poll(new, y, event=to_y)

    assert world.running() == {rolled_back[0]["PhysicalResourceId"]}
    assert world.cloud.count("SubmitJob") == 2, "X's and Z's array jobs; Y never submitted"


def test_a_rollback_that_keeps_the_old_run_stops_every_other_live_run(world: World) -> None:
    """The update failed in planning, so the rollback keeps X as it is (no-op). A run that a
    stale poll left running (W, recorded but never marked) is stopped; X is left alone."""
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    w = world.deploy(old, request_id="req-0")[0]["PhysicalResourceId"]
    x = world.deploy(old)[0]["PhysicalResourceId"]
    assert world.running() == {w, x}
    broken = {**old, "RolloutCount": "3", "Worlds": ["reInvent2019_track"] * 3}
    with pytest.raises(Exception, match="worker_params"):
        handler.on_event(make_update(broken, old, x, "req-2"), None)

    back = make_update(old, broken, x, "req-rollback")
    kept = handler.on_event(back, None)
    assert kept["PhysicalResourceId"] == x and kept["NoOp"] is True
    assert world.poll(old, kept, event=back) == {"IsComplete": True}

    assert world.running() == {x}


# ------------------------------------------------------------------ Delete stops every live run


def _mark(world: World, rid: str) -> None:
    """A run marked stopped whose stop never completed (its stopper was throttled out, or died)."""
    store = records.Store(world.s3, Retrier(budget_seconds=5), BUCKET, PREFIX)
    store.mark_stopped(rid, "stopped while starting: run demo-00000000 replaced it", 0)


def test_the_stacks_delete_stops_every_live_run_not_only_the_one_it_names(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    w = world.deploy(props, request_id="req-0")[0]["PhysicalResourceId"]
    x = world.deploy(props)[0]["PhysicalResourceId"]
    _mark(world, w)

    assert handler.on_event(_delete(props, x), None) == {"PhysicalResourceId": x}

    assert world.running() == set()
    assert {f"{PREFIX}/fanout/{r}.stopped" for r in (w, x)} <= set(world.listing())


def test_the_cleanup_delete_of_a_replaced_run_spares_the_current_one(world: World) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    w = world.deploy(old, request_id="req-0")[0]["PhysicalResourceId"]
    _mark(world, w)
    x = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "Tags": {"team": "other"}}
    to_y = make_update(new, old, x, "req-2")
    y = handler.on_event(to_y, None)
    assert world.poll(new, y, event=to_y)["IsComplete"] is True
    assert w not in world.running(), "Y's start swept the marked leftover too"

    handler.on_event(_delete(old, x), None)  # UPDATE_COMPLETE_CLEANUP

    assert world.running() == {y["PhysicalResourceId"]}


# ------------------------------------------------------------------ outcomes not known yet


def _poll_delete(world: World, props: dict[str, Any], rid: str, limit: int) -> tuple[int, bool]:
    """Delete, then the Provider's polls: (polls until done, whether a job ran while the Delete
    had reported success)."""
    delete = _delete(props, rid)
    result = handler.on_event(delete, None)
    polls = 0
    while result.get("StopPending") and polls < limit:
        world.now += POLL_INTERVAL
        polls += 1
        if handler.is_complete({**delete, **result}, None) == {"IsComplete": True}:
            break
    return polls, bool(world.running())


def test_a_delete_right_after_a_lost_submit_response_waits_for_the_job_and_stops_it(
    world: World,
) -> None:
    """The array job was accepted but the answer lost; ListJobs shows it only 10 minutes later.
    The Delete does not report until it found and stopped it."""
    props = make_props(4, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 600.0
    world.cloud.inject("SubmitJob", "ServerException", status=500, after_effect=True)
    created = world.create(props)
    assert world.poll(props, created) == {"IsComplete": False}
    assert len(world.cloud.active_batch_jobs()) == 1

    polls, left_running = _poll_delete(world, props, created["PhysicalResourceId"], limit=200)

    assert polls == 20 and not left_running
    assert world.cloud.count("CancelJob") == 1


def test_a_delete_after_a_submit_that_never_took_effect_ends_at_the_attempt_horizon(
    world: World,
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.inject("SubmitJob", "ServerException", status=500)  # not processed
    created = world.create(props)
    assert world.poll(props, created) == {"IsComplete": False}

    polls, left_running = _poll_delete(world, props, created["PhysicalResourceId"], limit=200)

    assert polls == ATTEMPT_HORIZON / POLL_INTERVAL and not left_running
    assert world.cloud.batch_jobs == {}


def test_a_lambda_killed_after_submit_never_leads_to_a_second_array_job_whatever_the_lag(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after SubmitJob took effect and before the job id was recorded; ListJobs lags 30
    minutes, far past any settle time. Nothing is resubmitted; the run comes up when the job
    shows."""
    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.list_lag = 30 * 60.0
    created = world.create(props)
    _killed_after(monkeypatch, batch_backend, "submit")
    with pytest.raises(LambdaTimedOut):
        world.poll(props, created)

    polls = 0
    while True:
        world.now += POLL_INTERVAL
        polls += 1
        if world.poll(props, created)["IsComplete"]:
            break
    assert polls == 60 and world.cloud.count("SubmitJob") == 1


def test_a_delete_soon_after_a_robomaker_start_stops_the_batch_while_the_listing_lags(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after StartSimulationJobBatch and before its ARN was recorded, with
    ListSimulationJobBatches lagging 5 minutes: the Delete watches until the batch shows."""
    props = make_props(3, "robomaker")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.sim_list_lag = 300.0
    created = world.create(props)
    _killed_after(monkeypatch, robomaker_backend, "ensure_started")
    with pytest.raises(LambdaTimedOut):
        world.poll(props, created)
    assert len(world.cloud.active_sim_batches()) == 1

    polls, left_running = _poll_delete(world, props, created["PhysicalResourceId"], limit=200)

    assert polls == 10 and not left_running


def test_a_delete_soon_after_a_recorded_robomaker_start_stops_it_at_once(world: World) -> None:
    props = make_props(3, "robomaker", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    world.cloud.sim_list_lag = 300.0
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}

    polls, left_running = _poll_delete(world, props, created["PhysicalResourceId"], limit=1)

    assert polls == 0 and not left_running, "cancelled by its recorded ARN"


def test_readiness_is_judged_from_a_trainer_description_taken_after_the_starts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer fails while the rollouts are being submitted: the poll must not report the
    run up on the strength of the description it took before."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    rid = created["PhysicalResourceId"]
    _after(
        monkeypatch,
        batch_backend,
        "submit",
        lambda: world.cloud.set_trainer(rid, "Failed", "Failed", "capacity"),
    )

    with pytest.raises(StartError, match=f"training job {rid} is Failed: capacity"):
        world.poll(props, created)
    assert world.running() == set()


def test_a_cancelled_update_whose_first_poll_comes_after_a_rollback_naming_the_old_run(
    world: World,
) -> None:
    """The rollback names only X (CloudFormation cancelled Y's update before Y's first poll) and
    restarts the old properties; Y's waiter, polling for the first time after that, must neither
    start Y nor stop what the rollback started."""
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    x = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "WaitFor": "RUNNING"}
    to_y = make_update(new, old, x, "req-2")
    y = handler.on_event(to_y, None)
    back = make_update(old, new, x, "req-rollback")
    z = handler.on_event(back, None)
    while not world.poll(old, z, event=back)["IsComplete"]:
        world.sleep(POLL_INTERVAL)
    kept = world.running()
    assert y["PhysicalResourceId"] not in kept and len(kept) == 1

    with pytest.raises(StartError, match="request req-2 is stale: a later Update"):
        world.poll(new, y, event=to_y)

    assert world.running() == kept
    assert world.cloud.count("CreateTrainingJob") == 1 + len(kept - {x})
