"""Benchmark of the run supervisor (prints figures; README, "The run supervisor").

1. **Trainer end to last rollout stopped**, in simulated time: a run of 20 workers whose trainer
   reaches its time limit at a random moment between two sweeps (1000 moments). Cases: the
   trainer's event arrives; it is lost (only the sweep sees the end); and the rollouts end by
   themselves once their entrypoint sees model/.finished (the watcher polls every 15 s and the
   simapp takes ~10 s to stop), which is when they end SUCCEEDED.
2. **One sweep over 50 experiments x 20 workers**, every trainer training: API calls by
   operation, and the wall time of the pass with every call taking a fixed latency (the reads
   run on a few threads, as in the Lambda).

The measured code is the real handler (observe -> decide -> act) against the fake account of the
tests, whose botocore clients validate every request against the service models.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "lambda"), str(ROOT / "tests" / "supervisor")]
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ.setdefault(_name, _value)

import logging  # noqa: E402

from supervisor import handler, observe  # noqa: E402
from supervisor_world import ACTIVE, BUCKET, PLATFORM, TOPIC, World  # noqa: E402

SETTINGS = observe.Settings(platform=PLATFORM, bucket=BUCKET, topic_arn=TOPIC)
SWEEP_SECONDS = 60.0
WATCH_SECONDS = 15.0  # simapp/rollout-entrypoint.sh ROLLOUT_FINISHED_POLL_SECONDS
SIMAPP_STOP_SECONDS = 10.0  # shutdown.sh sleeps 5 s, then the launcher winds down
SWEEP = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


_WORLD = World()
_AWS = _WORLD.clients()


def _stop_time(case: str, offset: float, seed: int) -> float:
    """Seconds from the trainer's end to the last rollout's end."""
    world, aws = _WORLD, _AWS
    world.__init__()  # type: ignore[misc]  # a fresh account, the same clients
    run = "bench-0a1b2c3d"
    world.add_stack("bench", run_id=run)
    world.start_trainer(run)
    world.submit_rollouts(run, 20)
    world.run_all()
    end = world.now + offset  # the trainer ends `offset` s after a sweep
    next_sweep = world.now + SWEEP_SECONDS
    world.now = end
    world.end_trainer(run, "Stopped", "MaxRuntimeExceeded")
    rng = random.Random(seed)
    if case != "event lost":
        world.now = end + rng.uniform(0.5, 3.0)  # EventBridge delivers within seconds
        handler.run(
            {"source": "aws.sagemaker", "detail": {"TrainingJobName": run}},
            aws,
            SETTINGS,
            world.now,
        )
    finished_at: float | None = None
    while world.active_jobs(run):
        mark = f"experiments/bench/runs/{run}/model/.finished"
        if case == "rollouts end by themselves" and mark in world.objects and finished_at is None:
            seen = world.objects[mark][2] + rng.uniform(0, WATCH_SECONDS)
            finished_at = seen + SIMAPP_STOP_SECONDS
        if finished_at is not None and finished_at <= next_sweep:
            world.now = finished_at
            for job in world.active_jobs(run):
                world.set_job(job["jobId"], "SUCCEEDED")
            break
        world.now = max(world.now, next_sweep)
        handler.run(SWEEP, aws, SETTINGS, world.now)
        next_sweep += SWEEP_SECONDS
    return world.now - end


def bench_stop(samples: int) -> None:
    print(f"trainer end -> last of 20 rollouts ended (simulated, {samples} moments between sweeps)")
    print(f"  {'case':32} {'min':>7} {'median':>7} {'max':>7}")
    for case in ("event arrives", "event lost", "rollouts end by themselves"):
        rng = random.Random(7)
        times = [_stop_time(case, rng.uniform(0, SWEEP_SECONDS), i) for i in range(samples)]
        print(f"  {case:32} {min(times):6.0f}s {statistics.median(times):6.0f}s {max(times):6.0f}s")


def bench_sweep(experiments: int, workers: int, latency_ms: float) -> None:
    logging.disable(logging.INFO)
    world = World()
    aws = world.clients()
    for i in range(experiments):
        name = f"exp-{i:02d}"
        run = f"{name}-{i:08x}"
        world.add_stack(name, run_id=run, supervision={"stallMinutes": 30})
        world.start_trainer(run)
        world.submit_rollouts(run, workers)
        world.put(f"experiments/{name}/runs/{run}/metrics/TrainingMetrics_1.json")
    world.run_all()
    world.calls.clear()
    world.latency = 0.0
    started = time.perf_counter()
    handler.run(SWEEP, aws, SETTINGS, world.now)
    measured = time.perf_counter() - started
    world.calls.clear()
    world.latency = latency_ms / 1000
    started = time.perf_counter()
    summary = handler.run(SWEEP, aws, SETTINGS, world.now)
    with_latency = time.perf_counter() - started
    calls = Counter(op for op, _ in world.calls)
    total = sum(calls.values())
    running = sum(1 for j in world.jobs.values() if j["status"] in ACTIVE and j.get("parent"))
    print(
        f"\none sweep over {experiments} experiments x {workers} workers ({running} rollouts running)"
    )
    print(f"  actions: {len(summary['actions'])} (a healthy fleet: none)")
    print(f"  API calls: {total} ({total / experiments:.1f} per experiment)")
    for op, n in sorted(calls.items(), key=lambda item: (-item[1], item[0])):
        print(f"    {op:26} {n:5}")
    print(f"  duration here, no latency: {measured:.2f} s")
    print(
        f"  duration at {latency_ms:.0f} ms per call: {with_latency:.1f} s "
        f"(calls one after another: {total * latency_ms / 1000:.0f} s; the Lambda's timeout: 180 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=60.0)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    bench_stop(args.samples)
    bench_sweep(args.experiments, args.workers, args.latency_ms)


if __name__ == "__main__":
    main()
