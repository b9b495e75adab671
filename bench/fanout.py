"""Benchmark of the fan-out: wall time and API calls to launch N rollouts (prints a table).

Every job API call costs a fixed latency and passes a token-bucket throttle; a call over the rate
is refused with the service's throttling error, as the real services do. Time is *simulated*:
latency and backoff sleeps advance a virtual clock, so the whole run takes seconds while reporting
what a deploy would take. The measured code is the real handler as the Provider framework drives
it (``on_event``, which plans, then ``is_complete`` until it reports completion: dedupe, retries
with full jitter, request builders, status polls) against the fake cloud of the tests; the
baseline starts one RoboMaker job per ``CreateSimulationJob`` call in sequence (no sleeps between
calls), with the same retry policy so that it finishes at all.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "lambda"), str(ROOT / "tests" / "fanout")]

import os  # noqa: E402

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)

from fanout import clients as clients_mod  # noqa: E402
from fanout import common, handler, robomaker_backend  # noqa: E402
from fanout.clients import Clients, new_session  # noqa: E402
from fanout.naming import Place, robomaker_token  # noqa: E402
from fanout.plan import RolloutPlan, Run  # noqa: E402
from fanout.props import parse_properties  # noqa: E402
from fanout.retry import Retrier  # noqa: E402
from fanout_builders import (  # noqa: E402
    ASSET_BUCKET,
    ASSET_KEY,
    BUCKET,
    REGION,
    STACK_ID,
    make_asset,
    make_event,
    make_props,
)
from fanout_fakecloud import FakeCloud  # noqa: E402
from moto import mock_aws  # noqa: E402

JOB_APIS = ("sagemaker", "batch", "robomaker")


class SimulatedCloud(FakeCloud):
    """The fake cloud behind a latency and a token-bucket throttle, on a virtual clock."""

    def __init__(self, latency: float, rate: float) -> None:
        super().__init__()
        self.now = 0.0
        self.latency = latency
        self.rate = rate
        self.tokens = rate  # a bucket of one second's worth of calls
        self.refilled_at = 0.0
        self.throttled = 0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def answer(self, model: Any, context: dict[str, Any], **kw: Any) -> Any:
        with self.lock:
            self.now += self.latency
            self.tokens = min(self.rate, self.tokens + (self.now - self.refilled_at) * self.rate)
            self.refilled_at = self.now
            if self.tokens < 1:
                self.throttled += 1
                self.calls.append((model.name, {}))
                code, status = (
                    ("TooManyRequestsException", 429)
                    if model.service_model.service_name == "batch"
                    else ("ThrottlingException", 400)
                )
                return self._error(code, "Rate exceeded", status)
            self.tokens -= 1
        return super().answer(model, context, **kw)

    def _CreateSimulationJob(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - op name
        token = p.get("clientRequestToken")
        for arn, job in self.sim_batches.items():
            if job["clientRequestToken"] == token:
                return {"arn": arn}
        arn = f"arn:aws:robomaker:{REGION}:123456789012:simulation-job/sim-{len(self.sim_batches)}"
        self.sim_batches[arn] = {"clientRequestToken": token, "status": "Pending", "request": p}
        return {"arn": arn}

    def started_rollouts(self) -> int:
        array_children = sum(
            (j.get("arrayProperties") or {}).get("size", 1) for j in self.batch_jobs.values()
        )
        batch_children = sum(
            len(b["request"].get("createSimulationJobRequests", [b["request"]]))
            for b in self.sim_batches.values()
        )
        return array_children + batch_children


def _setup(
    latency: float, rate: float, seed: int, drained: bool = False
) -> tuple[SimulatedCloud, Clients]:
    cloud = SimulatedCloud(latency, rate)
    if drained:  # other clients used the account's quota: the first calls get throttled
        cloud.tokens = -2 * rate
    built = Clients(new_session(REGION))
    for name in JOB_APIS:
        cloud.attach(getattr(built, name))
    rng = random.Random(seed)
    common.make_retrier = lambda budget: Retrier(  # type: ignore[assignment]
        budget_seconds=3600, sleep=cloud.sleep, rand=rng.random, clock=lambda: cloud.now
    )
    clients_mod.set_factory(lambda: built)
    s3 = built.s3
    for bucket in (BUCKET, ASSET_BUCKET):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return cloud, built


def run_handler(
    backend: str, n: int, latency: float, rate: float, seed: int, *, drained: bool = False
) -> dict[str, Any]:
    with mock_aws():
        cloud, built = _setup(latency, rate, seed, drained)
        props = make_props(n, backend)
        built.s3.put_object(Bucket=ASSET_BUCKET, Key=ASSET_KEY, Body=make_asset(props["Worlds"]))
        event = make_event("Create", props)
        result = handler.on_event(event, None)
        polls = 0
        while not handler.is_complete({**event, **result}, None)["IsComplete"]:
            polls += 1
            if polls > 100:
                raise RuntimeError(f"{backend} N={n}: not complete after {polls} polls")
            cloud.sleep(30.0)  # the Provider's query interval
        label = f"{backend} (quota drained)" if drained else backend
        return _row(label, n, cloud, launch_ops=("SubmitJob", "StartSimulationJobBatch"))


def run_baseline(n: int, latency: float, rate: float, seed: int) -> dict[str, Any]:
    """One CreateSimulationJob per worker, in sequence."""
    with mock_aws():
        cloud, built = _setup(latency, rate, seed)
        props = parse_properties(make_props(n, "robomaker"))
        plan = RolloutPlan(
            Run("demo-0123abcd", props, Place.from_stack_id(STACK_ID)),
            ("training_params.yaml",) * n,
            "model/model_metadata.json",
        )
        retry = common.make_retrier(3600)
        robomaker = built.robomaker
        for i in range(n):
            request = {
                **robomaker_backend.job_request(plan, i),
                "clientRequestToken": robomaker_token(plan.run.run_id, i),
            }
            retry.call(
                "robomaker:CreateSimulationJob",
                lambda request=request: robomaker.create_simulation_job(**request),
            )
        return _row("baseline (1 job/call)", n, cloud, launch_ops=("CreateSimulationJob",))


def _row(label: str, n: int, cloud: SimulatedCloud, launch_ops: tuple[str, ...]) -> dict[str, Any]:
    launch_calls = sum(1 for op, _ in cloud.calls if op in launch_ops)
    return {
        "backend": label,
        "n": n,
        "seconds": cloud.now,
        "calls": len(cloud.calls),
        "launch_calls": launch_calls,
        "throttled": cloud.throttled,
        "started": cloud.started_rollouts(),
        # The bucket starts full, so the first `rate` calls pass at once.
        "floor": (n - cloud.rate) / cloud.rate
        if launch_ops == ("CreateSimulationJob",) and n > 2 * cloud.rate
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--rate", type=float, default=10.0, help="throttle, calls per second")
    parser.add_argument("--sizes", default="1,16,128,1000")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    latency, rate = args.latency_ms / 1000.0, args.rate
    sizes = [int(s) for s in args.sizes.split(",")]

    rows = []
    for n in sizes:
        rows.append(run_handler("batch", n, latency, rate, args.seed))
        rows.append(run_handler("robomaker", n, latency, rate, args.seed))
        rows.append(run_baseline(n, latency, rate, args.seed))
    for backend in ("batch", "robomaker"):
        rows.append(run_handler(backend, sizes[-1], latency, rate, args.seed, drained=True))

    print(
        "Fan-out launch benchmark (SIMULATED clock: "
        f"{args.latency_ms:.0f} ms per API call, "
        f"throttle {rate:g} calls/s token bucket, full-jitter backoff; seed {args.seed})"
    )
    print("calls = every job-API call incl. trainer + dedupe + throttled attempts; S3 not counted")
    header = (
        f"{'backend':<26} {'N':>5} {'sim time s':>11} {'calls':>6} {'launch calls':>13} "
        f"{'throttled':>9} {'started':>8}  note"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for r in rows:
        note = ""
        if r["floor"] is not None:
            ratio = r["seconds"] / r["floor"]
            note = f"{ratio:.2f}x the throttle limit (N-burst)/rate = {r['floor']:.1f}s"
        if r["started"] != r["n"]:
            note += f"  DUPLICATE/MISSING STARTS ({r['started']} != {r['n']})"
            ok = False
        print(
            f"{r['backend']:<26} {r['n']:>5} {r['seconds']:>11.2f} {r['calls']:>6} "
            f"{r['launch_calls']:>13} {r['throttled']:>9} {r['started']:>8}  {note}"
        )
    print("every run started each rollout exactly once" if ok else "DUPLICATE STARTS FOUND")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
