"""Property-based test of the fan-out: random sequences of CloudFormation requests, Provider
polls, killed Lambdas, ListJobs lag, throttling and failed starts over the fake cloud, with the
invariants checked after every step (README, "The fan-out").

CloudFormation is modelled as it behaves: one stack operation at a time; a cancelled update rolls
back while the cancelled update's waiter goes on polling (aws/aws-cdk#31541); a successful update
is followed by the Delete of the replaced run; a failed Create by the Delete of its run; a failed
update by its rollback. Stale waiters are polled in any order.

Invariants, after every step:
- no run is started twice (one trainer, one array job, one RoboMaker batch per chunk token);
- once a Delete of run R reported success, nothing of R runs;
- when a rollback has completed, at most one run of the experiment runs (the one it kept);
- every reason CloudFormation is given is one line of at most 1000 characters.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import SharedClients, fake_world
from fanout import batch_backend, handler, robomaker_backend, trainer
from fanout.errors import MAX_REASON, FanoutError
from fanout_builders import make_asset, make_event, make_props
from fanout_world import LambdaTimedOut, World
from hypothesis import given
from hypothesis import strategies as st

THROTTLED_OPS = ("SubmitJob", "ListJobs", "StopTrainingJob", "StartSimulationJobBatch")


STEP = st.one_of(
    st.tuples(st.just("update")),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("delete")),
    st.tuples(st.just("create")),
    st.tuples(st.just("poll"), st.integers(0, 3)),
    st.tuples(st.just("poll"), st.integers(0, 3)),
    st.tuples(st.just("poll"), st.integers(0, 3)),
    st.tuples(st.just("kill"), st.sampled_from(["trainer", "rollouts"])),
    # The next poll's start call is interleaved with another request or poll, right after the
    # call took effect (a Delete, a cancel, another waiter's poll landing mid-start).
    st.tuples(
        st.just("interleave"),
        st.sampled_from(["trainer", "rollouts"]),
        st.sampled_from([("delete",), ("cancel",), ("poll", 0), ("poll", 1), ("update",)]),
    ),
    st.tuples(st.just("lag"), st.sampled_from([0.0, 60.0, 600.0, 1800.0])),
    st.tuples(st.just("throttle"), st.sampled_from(THROTTLED_OPS), st.integers(1, 40)),
    st.tuples(st.just("fail"), st.booleans()),
    st.tuples(st.just("wait"), st.sampled_from([30.0, 300.0, 1800.0])),
)
PROGRAM = st.tuples(
    st.sampled_from(["batch", "robomaker"]), st.lists(STEP, min_size=6, max_size=24)
)


@dataclass
class Waiter:
    """One Provider waiter: the request, on_event's answer, and what CloudFormation does next."""

    kind: str  # create | update | rollback | delete
    event: dict[str, Any]
    result: dict[str, Any]
    props: dict[str, Any]
    replaced: tuple[str, dict[str, Any]] | None = None  # (old id, old props) for updates


@dataclass
class Stack:
    """CloudFormation's view of the stack and the waiters still polling."""

    world: World
    variants: tuple[dict[str, Any], dict[str, Any]]
    current: str | None = None
    current_props: dict[str, Any] | None = None
    busy: Waiter | None = None  # the operation in progress (CloudFormation runs one at a time)
    waiters: list[Waiter] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)  # runs whose Delete reported success
    requests: int = 0
    during: tuple[str, tuple[Any, ...] | None] | None = None  # (start call, step or None: kill)
    reasons: list[str] = field(default_factory=list)

    def request_id(self) -> str:
        self.requests += 1
        return f"req-{self.requests}"

    # ------------------------------------------------------------ CloudFormation's requests
    def on_event(self, event: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return handler.on_event(event, None)
        except FanoutError as error:
            self.reasons.append(str(error))
            return None

    def start(self, kind: str, event: dict[str, Any], props: dict[str, Any], **kw: Any) -> None:
        result = self.on_event(event)
        if result is None:  # on_event refused: the operation fails, nothing changed
            self.busy = None
            return
        waiter = Waiter(kind, event, result, props, **kw)
        self.busy = waiter
        self.waiters.append(waiter)
        if kind != "delete":
            self.current, self.current_props = result["PhysicalResourceId"], props

    def create(self) -> None:
        if self.busy is None and self.current is None:
            props = self.variants[0]
            self.start("create", make_event("Create", props, request_id=self.request_id()), props)

    def update(self, physical: str, new: dict, old: dict, kind: str = "update") -> None:
        event = make_event(
            "Update", new, request_id=self.request_id(), physical_id=physical, old_props=old
        )
        self.start(kind, event, new, replaced=(physical, old))

    def delete(self, rid: str, props: dict[str, Any]) -> None:
        event = make_event("Delete", props, request_id=self.request_id(), physical_id=rid)
        result = self.on_event(event)
        if result is None:
            self.busy = None
            return
        if result.get("StopPending"):
            waiter = Waiter("delete", event, result, props)
            self.busy = waiter
            self.waiters.append(waiter)
        else:
            self.deleted.add(rid)
            self.busy = None

    def user_update(self) -> None:
        if self.busy is None and self.current and self.current_props:
            new = self.variants[1] if self.current_props is self.variants[0] else self.variants[0]
            self.update(self.current, new, self.current_props)

    def cancel(self) -> None:
        """Cancel the update in progress: CloudFormation rolls back; its waiter goes on."""
        waiter = self.busy
        if waiter is not None and waiter.kind == "update" and waiter.replaced and self.current:
            self.update(self.current, waiter.replaced[1], waiter.props, kind="rollback")

    def user_delete(self) -> None:
        if self.busy is None and self.current and self.current_props:
            rid, props = self.current, self.current_props
            self.current = self.current_props = None
            self.delete(rid, props)

    # ------------------------------------------------------------ the Provider's polls
    def poll(self, index: int) -> None:
        if not self.waiters:
            return
        waiter = self.waiters[index % len(self.waiters)]
        try:
            with self.killing():
                answer = handler.is_complete({**waiter.event, **waiter.result}, None)
        except LambdaTimedOut:
            return  # the next poll is a new invocation
        except FanoutError as error:
            self.reasons.append(str(error))
            if waiter in self.waiters:  # an interleaved poll of it may have ended it already
                self.waiters.remove(waiter)
                if waiter is self.busy:
                    self.failed(waiter)
            return
        if answer.get("IsComplete") and waiter in self.waiters:
            self.waiters.remove(waiter)
            if waiter is self.busy:
                self.completed(waiter)

    def completed(self, waiter: Waiter) -> None:
        self.busy = None
        if waiter.kind == "delete":
            self.deleted.add(str(waiter.result["PhysicalResourceId"]))
        elif waiter.kind in ("update", "rollback") and waiter.replaced:
            gone, gone_props = waiter.replaced
            if gone != self.current:
                self.delete(gone, gone_props)  # *_COMPLETE_CLEANUP
        if waiter.kind == "rollback":
            running = self.world.running()
            assert running <= {self.current}, f"after the rollback {running} run"

    def failed(self, waiter: Waiter) -> None:
        self.busy = None
        if waiter.kind == "create" and self.current and self.current_props:
            rid, props = self.current, self.current_props
            self.current = self.current_props = None
            self.delete(rid, props)
        elif waiter.kind == "update" and waiter.replaced and self.current:
            self.update(self.current, waiter.replaced[1], waiter.props, kind="rollback")
        # A failed rollback or Delete leaves the stack as it is (the user retries).

    @contextmanager
    def killing(self) -> Iterator[None]:
        """A context in which the next trainer or rollouts start call, right after it took
        effect, kills the Lambda or runs another step (once)."""
        during, self.during = self.during, None
        with pytest.MonkeyPatch.context() as patch:
            if during is None:
                yield
                return
            target, step = during
            module, name = {
                "trainer": (trainer, "create"),
                "rollouts": (
                    (batch_backend, "submit")
                    if self.variants[0]["Backend"] == "batch"
                    else (robomaker_backend, "ensure_started")
                ),
            }[target]
            real = getattr(module, name)
            pending = [step]

            def interleaved(*args: Any, **kwargs: Any) -> Any:
                result = real(*args, **kwargs)
                if pending:
                    inner = pending.pop()
                    if inner is None:
                        raise LambdaTimedOut
                    patch.setattr(module, name, real)  # the inner step calls it plainly
                    _apply(self, inner)
                return result

            patch.setattr(module, name, interleaved)
            yield

    # ------------------------------------------------------------ invariants
    def check(self) -> None:
        cloud = self.world.cloud
        batch_names = Counter(job["jobName"] for job in cloud.batch_jobs.values())
        assert all(n == 1 for n in batch_names.values()), f"array job started twice: {batch_names}"
        tokens = Counter(b["clientRequestToken"] for b in cloud.sim_batches.values())
        assert all(n == 1 for n in tokens.values()), f"batch started twice: {tokens}"
        trainers = Counter(p["TrainingJobName"] for p in cloud.ops("CreateTrainingJob"))
        assert len(cloud.training_jobs) == len(trainers)
        running = self.world.running()
        assert not (running & self.deleted), f"{running & self.deleted} run after their Delete"
        for reason in self.reasons:
            assert "\n" not in reason and 0 < len(reason) <= MAX_REASON, reason


def test_fanout_invariants_hold_over_random_sequences(
    record_property: Callable[[str, object], None], shared_clients: SharedClients
) -> None:
    explored = Counter[str]()

    @given(program=PROGRAM)
    def run(program: tuple[str, list[tuple[Any, ...]]]) -> None:
        backend, steps = program
        with pytest.MonkeyPatch.context() as patch, fake_world(patch, shared_clients) as world:
            variants = (
                make_props(2, backend),
                {**make_props(2, backend), "Tags": {"team": "other"}},
            )
            world.put_asset(make_asset(variants[0]["Worlds"]))
            stack = Stack(world=world, variants=variants)
            stack.create()
            for step in steps:
                _apply(stack, step)
                stack.check()
                explored["steps"] += 1
            # CloudFormation ends what it started: the waiters are polled out, then the stack
            # is deleted; nothing of the experiment may run afterwards.
            for _ in range(200):
                if not stack.waiters and stack.busy is None:
                    break
                world.now += 60  # faster than the Provider polls: the ends come sooner
                stack.poll(0)
                stack.check()
            stack.user_delete()
            while stack.busy is not None:
                world.now += 30
                stack.poll(stack.waiters.index(stack.busy))
                stack.check()
            explored["sequences"] += 1
            if stack.busy is None and stack.current is None and world.cloud.faults == []:
                assert world.running() == set(), "the stack's Delete leaves nothing running"

    run()
    record_property(
        "explored",
        f"fan-out properties: {explored['sequences']} sequences, {explored['steps']} steps "
        "explored (deeper: --hypothesis-profile=deep)",
    )
    assert explored["sequences"] > 0


def _apply(stack: Stack, step: tuple[Any, ...]) -> None:
    world = stack.world
    kind = step[0]
    if kind == "create":
        stack.create()
    elif kind == "update":
        stack.user_update()
    elif kind == "cancel":
        stack.cancel()
    elif kind == "delete":
        stack.user_delete()
    elif kind == "poll":
        world.now += 30
        stack.poll(step[1])
    elif kind == "kill":
        stack.during = (step[1], None)
    elif kind == "interleave":
        stack.during = (step[1], step[2])
    elif kind == "lag":
        world.cloud.list_lag = world.cloud.sim_list_lag = step[1]
    elif kind == "throttle":
        world.cloud.throttle(step[1], times=step[2])
    elif kind == "fail":
        op = "SubmitJob" if stack.variants[0]["Backend"] == "batch" else "StartSimulationJobBatch"
        world.cloud.inject(op, "ServerException", status=500, after_effect=step[1])
    elif kind == "wait":
        world.now += step[1]
