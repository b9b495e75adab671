"""The model a run starts from: an earlier run (``latest`` or a run id) or a model prefix.

The trainer reads ``<prefix>/model/`` of ``pretrained_s3_bucket``/``pretrained_s3_prefix`` and
picks the checkpoint that ``model/deepracer_checkpoints.json`` names as best or last
(deepracer-simapp bundle/markov/training_worker.py; rollout 0 writes that file,
bundle/markov/metrics/s3_metrics.py). A model without that file cannot be loaded, so planning
checks it and fails with the reason before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from . import files
from .errors import PropertyError
from .naming import RUN_MANIFEST, is_run_id, run_prefix
from .props import TrainerProps
from .retry import Retrier, error_code

CHECKPOINTS_KEY = "model/deepracer_checkpoints.json"
CHECKPOINT_ENTRIES = {"best": "best_checkpoint", "last": "last_checkpoint"}


@dataclass(frozen=True)
class PretrainedModel:
    bucket: str
    prefix: str  # the model's data prefix: the trainer reads <prefix>/model/
    checkpoint: str  # best | last
    run: str | None = None  # the run it came from, when named as a run

    def lineage(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "checkpoint": self.checkpoint,
            "run": self.run,
        }


def resolve(
    s3: Any, retry: Retrier, trainer: TrainerProps, *, this_run: str, pinned: str | None = None
) -> PretrainedModel | None:
    """The pretrained model of a run, or None. ``pinned`` is a prefix resolved earlier (on_event
    resolves ``latest`` once; is_complete must start from the same model)."""
    if trainer.pretrained_bucket is None or trainer.pretrained_prefix is None:
        return None
    bucket, prefix = trainer.pretrained_bucket, trainer.pretrained_prefix
    checkpoint = trainer.pretrained_checkpoint or "best"
    wanted = trainer.pretrained_run
    if pinned is not None:
        run = pinned.rsplit("/", 1)[-1] if wanted else None
        return PretrainedModel(bucket, pinned, checkpoint, run if is_run_id(run) else None)
    if wanted is None:  # a model prefix of its own (e.g. a copied deepracer-for-cloud model)
        model = PretrainedModel(bucket, prefix, checkpoint)
    else:
        run = _latest_run(s3, retry, bucket, prefix) if wanted == "latest" else wanted
        if run == this_run:
            raise PropertyError(f"Trainer.PretrainedRun {wanted!r} names the run being started")
        model = PretrainedModel(bucket, run_prefix(prefix, run), checkpoint, run)
    _check_checkpoint(s3, retry, model)
    return model


def _latest_run(s3: Any, retry: Retrier, bucket: str, experiment_prefix: str) -> str:
    key = f"{experiment_prefix}/{RUN_MANIFEST}"
    try:
        record = files.read_json(s3, retry, bucket, key)
    except (ClientError, ValueError) as error:
        raise PropertyError(f"pretrained: cannot read s3://{bucket}/{key}: {error}") from error
    run = (record or {}).get("runId")
    if not is_run_id(run):
        raise PropertyError(
            f"pretrained run 'latest': s3://{bucket}/{key} records no run "
            "(has that experiment been deployed?)"
        )
    return str(run)


def _check_checkpoint(s3: Any, retry: Retrier, model: PretrainedModel) -> None:
    key = f"{model.prefix}/{CHECKPOINTS_KEY}"
    where = f"s3://{model.bucket}/{key}"
    try:
        document = files.read_json(s3, retry, model.bucket, key)
    except ClientError as error:
        raise PropertyError(
            f"pretrained: cannot read {where}: {error_code(error)} (the fan-out may read only "
            "the pretrained model the experiment file names)"
        ) from error
    except ValueError as error:
        raise PropertyError(f"pretrained: {where} is not JSON ({error})") from error
    if document is None:
        raise PropertyError(
            f"pretrained: {where} does not exist: that run has not saved a checkpoint yet"
        )
    entry = document.get(CHECKPOINT_ENTRIES[model.checkpoint])
    if not isinstance(entry, dict) or not entry.get("name"):
        raise PropertyError(f"pretrained: {where} names no {model.checkpoint} checkpoint")
