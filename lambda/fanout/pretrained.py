"""The model a run starts from: an earlier run (``latest`` or a run id) or a model prefix.

The trainer reads ``<prefix>/model/`` of ``pretrained_s3_bucket``/``pretrained_s3_prefix`` and
picks the checkpoint that ``model/deepracer_checkpoints.json`` names as best or last
(deepracer-simapp bundle/markov/training_worker.py; rollout 0 writes that file,
bundle/markov/metrics/s3_metrics.py). A model without that file cannot be loaded, so planning
checks it and fails with the reason before anything starts.

The trainer does more than read that file: it lists ``<prefix>/model``, reads
``model/.coach_checkpoint`` (required) and the chosen checkpoint's ``.index``/``.data-*``/
``.meta`` files, and rewrites ``model/.coach_checkpoint`` (training_worker.py, the pretrained
store of s3_boto_data_store.py, rl_coach_checkpoint.py, tensorflow_model.py). So the fan-out
copies the chosen checkpoint into the new run's own ``<run>/pretrained/model/`` (with a
``.coach_checkpoint`` and a checkpoints file naming it best and last) before the trainer starts,
and points the trainer there: the experiment's job roles never hold a grant on the source, and
the source is never written.
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
COPY_FOLDER = "pretrained"  # <run data prefix>/pretrained/model/: the trainer's copy


@dataclass(frozen=True)
class PretrainedModel:
    bucket: str
    prefix: str  # the model's data prefix: the trainer reads <prefix>/model/
    checkpoint: str  # best | last
    run: str | None = None  # the run it came from, when named as a run

    def lineage(self, data_prefix: str | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "checkpoint": self.checkpoint,
            "run": self.run,
        }
        if data_prefix is not None:
            found["copy"] = copy_prefix(data_prefix)
        return found

    def copy_at(self, data_prefix: str) -> PretrainedModel:
        """The same model as the trainer of the run at ``data_prefix`` reads it: its copy."""
        return PretrainedModel(self.bucket, copy_prefix(data_prefix), self.checkpoint, self.run)


def copy_prefix(data_prefix: str) -> str:
    return f"{data_prefix}/{COPY_FOLDER}"


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
    checkpoint_files(s3, retry, model)
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


def _checkpoint_name(s3: Any, retry: Retrier, model: PretrainedModel) -> str:
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
    return str(entry["name"])


def checkpoint_files(s3: Any, retry: Retrier, model: PretrainedModel) -> tuple[str, list[str]]:
    """The chosen checkpoint's name and the source keys the trainer loads it from (its
    ``.index``, ``.data-*`` and ``.meta``; frozen ``.pb`` graphs are not read). A checkpoint
    whose files are gone (the trainer keeps only the last few) fails here, naming what exists."""
    name = _checkpoint_name(s3, retry, model)
    folder = f"{model.prefix}/model/"
    try:
        keys = _list(s3, retry, model.bucket, folder)
    except ClientError as error:
        raise PropertyError(
            f"pretrained: cannot list s3://{model.bucket}/{folder}: {error_code(error)}"
        ) from error
    chosen = [
        key
        for key in keys
        if key.rsplit("/", 1)[-1].startswith(f"{name}.") and not key.endswith(".pb")
    ]
    suffixes = {key.rsplit("/", 1)[-1][len(name) :] for key in chosen}
    if ".index" not in suffixes or not any(x.startswith(".data-") for x in suffixes):
        kept = sorted(
            {k.rsplit("/", 1)[-1].split(".ckpt")[0] + ".ckpt" for k in keys if ".ckpt." in k}
        )
        raise PropertyError(
            f"pretrained: s3://{model.bucket}/{folder} has no {name}.index and .data-* files "
            f"(checkpoints kept: {', '.join(kept) or 'none'}): the trainer could not load it"
        )
    return name, sorted(chosen)


def copy_into(
    s3: Any, retry: Retrier, model: PretrainedModel, *, bucket: str, data_prefix: str
) -> str:
    """Copy the chosen checkpoint into ``<data_prefix>/pretrained/model/`` with a
    ``.coach_checkpoint`` and a checkpoints file that name it (best and last); returns its
    name. Safe to repeat: every copy and write gives the same object."""
    name, keys = checkpoint_files(s3, retry, model)
    target = f"{copy_prefix(data_prefix)}/model"
    for key in keys:
        _copy(
            s3,
            retry,
            source=(model.bucket, key),
            bucket=bucket,
            key=f"{target}/{key.rsplit('/', 1)[-1]}",
        )
    # rl_coach reads .coach_checkpoint as the bare checkpoint name (rl_coach/checkpoint.py).
    retry.call(
        "s3:PutObject .coach_checkpoint",
        lambda: s3.put_object(
            Bucket=bucket, Key=f"{target}/.coach_checkpoint", Body=name.encode("utf-8")
        ),
    )
    named = {"name": name}
    files.write_json(
        s3,
        retry,
        bucket,
        f"{target}/deepracer_checkpoints.json",
        {"best_checkpoint": named, "last_checkpoint": named},
    )
    return name


def _copy(s3: Any, retry: Retrier, *, source: tuple[str, str], bucket: str, key: str) -> None:
    retry.call(
        f"s3:CopyObject {source[1]}",
        lambda: s3.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": source[0], "Key": source[1]}
        ),
    )


def _list(s3: Any, retry: Retrier, bucket: str, folder: str) -> list[str]:
    keys: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": folder}
        if token:
            kwargs["ContinuationToken"] = token
        page = _list_page(s3, retry, kwargs)
        keys += [str(item["Key"]) for item in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def _list_page(s3: Any, retry: Retrier, kwargs: dict[str, Any]) -> dict[str, Any]:
    return dict(
        retry.call(f"s3:ListObjectsV2 {kwargs['Prefix']}", lambda: s3.list_objects_v2(**kwargs))
    )
