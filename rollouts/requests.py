"""``rollouts plan --requests DIR``: the exact API requests a deploy would send, offline.

The experiment's files are rendered as the stack's asset holds them, the run's properties come
from ``rollouts.run_properties`` (what the experiment stack sends), and the requests from the
fan-out Lambda's own planning (``lambda/fanout/start_plan.py``): nothing here rebuilds a
request. Deploy-time values the file cannot know stay visible ``<placeholders>`` unless given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollouts.naming import run_prefix
from rollouts.plan import LATEST_RUN_PLACEHOLDER
from rollouts.platform import PlatformConfig
from rollouts.run_properties import ExperimentResources, run_properties, settings
from rollouts.spec import ExperimentSpec

PLACEHOLDERS = {
    "bucket": "<data-bucket>",
    "region": "<region>",
    "account": "<account-id>",
    "run_id": "<run-id>",
}


# Each experiment stack creates its own job roles, security groups and (Batch) Fargate compute
# environment, job queue and job definition.
OFFLINE_JOBS = ExperimentResources(
    trainer_role_arn="<experiment-trainer-role-arn>",
    rollout_role_arn="<experiment-rollout-role-arn>",
    trainer_security_group="<experiment-trainer-security-group>",
    rollout_security_group="<experiment-rollout-security-group>",
    job_queue_arn="<experiment-job-queue-arn>",
    job_definition_arn="<experiment-job-definition-arn>",
)


@dataclass(frozen=True)
class OfflinePlatform:
    """The platform's values as placeholders (a deploy reads them from SSM)."""

    bucket_name: str
    assign_public_ip: str
    image_uri: str = "<simapp-image-uri>"
    simulation_application_arn: str = "<simulation-application-arn>"
    rollout_egress_security_group: str = "<rollout-egress-security-group>"

    @property
    def trainer_subnets(self) -> list[str]:
        return ["<trainer-subnet>"]

    @property
    def rollout_subnets(self) -> list[str]:
        return ["<rollout-subnet>"]


def build_requests(
    spec: ExperimentSpec, config: PlatformConfig, values: Mapping[str, str | None]
) -> dict[str, Any]:
    """Every request of one deploy, by file name (``CreateTrainingJob.json``, ...)."""
    from rollouts.operate import fanout_modules  # noqa: PLC0415 (the Lambda's code, on demand)
    from rollouts.render import render_files  # noqa: PLC0415

    given = {key: values.get(key) or shown for key, shown in PLACEHOLDERS.items()}
    fanout = fanout_modules()
    trainer, rollouts = settings(spec)
    raw = run_properties(
        experiment=spec.name,
        backend=config.backend,
        platform=OfflinePlatform(
            bucket_name=given["bucket"],
            assign_public_ip=str(config.egress == "public").lower(),
        ),
        jobs=OFFLINE_JOBS,
        files_bucket="<cdk-assets-bucket>",
        files_key="<files-asset>.zip",
        trainer=trainer,
        rollouts=rollouts,
        wait_for=config.wait_for,
        tags=spec.tags,
        robomaker_app_form=config.robomaker_app_form,
    )
    props = fanout["props"].parse_properties(raw, placeholders=True)
    place = fanout["naming"].Place(
        partition="aws", region=given["region"], account=given["account"]
    )
    run = fanout["plan"].Run(run_id=given["run_id"], props=props, place=place)
    members = {name: text.encode("utf-8") for name, text in render_files(spec).items()}
    asset = fanout["files"].Asset(manifest=json.loads(members["manifest.json"]), members=members)
    model = None
    if spec.pretrained is not None:
        # What the fan-out resolves at deploy time ("latest": the run run.json records then).
        pinned = spec.pretrained.prefix or run_prefix(
            spec.pretrained.bucket_prefix,
            LATEST_RUN_PLACEHOLDER if spec.pretrained.run == "latest" else str(spec.pretrained.run),
        )
        model = fanout["pretrained"].resolve(
            None, None, props.trainer, this_run=run.run_id, pinned=pinned
        )
    plan = fanout["start_plan"].plan_start(asset, run, model)
    requests: dict[str, Any] = {"CreateTrainingJob.json": plan.training_request}
    if plan.batch_request is not None:
        requests["SubmitJob.json"] = plan.batch_request
    for chunk, request in enumerate(plan.robomaker_requests):
        requests[f"StartSimulationJobBatch-{chunk}.json"] = request
    requests["files.json"] = {
        "bucket": props.bucket,
        "prefix": run.data_prefix,
        "objects": sorted(plan.rendered.objects),
    }
    return requests


def write_requests(directory: Path, requests: Mapping[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in sorted(requests.items()):
        path = directory / name
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
