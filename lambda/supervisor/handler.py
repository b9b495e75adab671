"""Entry point of the run supervisor: every event (and the periodic sweep) runs the same loop,
observe -> decide -> act. An event only narrows what is looked at to the experiment it names;
what is done depends on what is observed, never on the event itself (README.md, "The run
supervisor")."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from . import act, clients, decide, observe

LOG = logging.getLogger()
LOG.setLevel(logging.INFO)

RUN_NAME = re.compile(r"^([a-z][a-z0-9-]{0,39})-[0-9a-f]{8}(?:-.*)?$")
STACK_ARN = re.compile(r"^arn:[^:]+:cloudformation:[^:]*:\d*:stack/([^/]+)/")


def wall_clock() -> float:
    """Seconds since the epoch (replaced by tests)."""
    return time.time()


def scope_of(event: Mapping[str, Any]) -> frozenset[str] | None:
    """The experiment an event concerns; None for the sweep (look at everything), and nothing at
    all (an empty scope) for a job or stack event that names none of the project's."""
    detail = event.get("detail")
    source = event.get("source")
    if source not in ("aws.batch", "aws.sagemaker", "aws.cloudformation"):
        return None
    if not isinstance(detail, Mapping):
        return frozenset()
    if source == "aws.cloudformation":
        stack = STACK_ARN.match(str(detail.get("stack-id", "")))
        if stack and stack.group(1).startswith(observe.STACK_PREFIX):
            return frozenset({stack.group(1)[len(observe.STACK_PREFIX) :]})
        return frozenset()
    name = str(detail.get("jobName" if source == "aws.batch" else "TrainingJobName", ""))
    match = RUN_NAME.match(name)
    return frozenset({match.group(1)}) if match else frozenset()


def run(
    event: Mapping[str, Any], aws: Any, settings: observe.Settings, now: float
) -> dict[str, Any]:
    scope = scope_of(event)
    if scope is not None and not scope:
        return {"scope": [], "skipped": "the event names none of the project's jobs or stacks"}
    started = time.monotonic()
    observed, calls = observe.observe(aws, settings, now=now, scope=scope)
    actions = decide.decide(observed)
    report = act.apply(aws, settings, actions, now=now)
    summary = {
        "scope": sorted(scope) if scope is not None else "all",
        "stacks": len(observed.stacks),
        "runs": len(observed.runs),
        "reads": calls,
        "actions": report.applied,
        "notified": report.notified,
        "errors": report.errors,
        "seconds": round(time.monotonic() - started, 3),
    }
    LOG.info("supervised %s", summary)
    return summary


def on_event(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    settings = observe.Settings.from_json(os.environ["SUPERVISOR_CONFIG"])
    summary = run(event, clients.get_clients(), settings, wall_clock())
    if summary.get("errors"):
        # Failing the invocation makes Lambda retry an event; the sweep retries the rest.
        raise RuntimeError("; ".join(summary["errors"])[:2000])
    return summary
