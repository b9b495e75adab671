"""Every request a run sends, computed from the files asset without any AWS call.

``handler`` plans with it before starting anything (so bad input starts nothing), and
``rollouts plan --requests`` writes the same requests offline: one code path for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import batch_backend, files, robomaker_backend, trainer
from .plan import RolloutPlan, Run
from .pretrained import PretrainedModel


@dataclass(frozen=True)
class StartPlan:
    """Everything a run writes and sends, computed without starting anything."""

    rendered: files.RenderedFiles
    training_request: dict[str, Any]
    batch_request: dict[str, Any] | None
    robomaker_requests: list[dict[str, Any]]
    pretrained: PretrainedModel | None = None


def plan_start(asset: files.Asset, run: Run, pretrained: PretrainedModel | None) -> StartPlan:
    """Render the run's files (under its own data prefix) and build every request. Raises on
    any deterministic problem (placeholders, Batch payload quota)."""
    props = run.props
    rendered = files.render(
        asset,
        {
            "bucket": props.bucket,
            "prefix": run.data_prefix,
            "region": run.place.region,
            "account": run.place.account,
            "training_job_arn": run.training_job_arn,
        },
        [props.video_stream(i) for i in range(props.rollout_count)],
    )
    hyper = trainer.hyperparameters(
        props,
        run.place.region,
        data_prefix=run.data_prefix,
        model_metadata_key=asset.model_metadata_key,
        from_file=rendered.hyperparameters,
        # The trainer loads the copy in its own run's prefix (pretrained.copy_into).
        pretrained=pretrained.copy_at(run.data_prefix) if pretrained is not None else None,
    )
    rollouts = RolloutPlan(
        run=run, yaml_keys=rendered.worker_yaml_keys, model_metadata_key=asset.model_metadata_key
    )
    return StartPlan(
        rendered=rendered,
        training_request=trainer.training_job_request(
            props,
            run.training_job_name,
            data_prefix=run.data_prefix,
            tags=run.tags,
            hyper=hyper,
            algorithm=asset.training_algorithm,
        ),
        batch_request=batch_backend.submit_request(rollouts) if props.backend == "batch" else None,
        robomaker_requests=(
            robomaker_backend.batch_requests(rollouts) if props.backend == "robomaker" else []
        ),
        pretrained=pretrained,
    )
