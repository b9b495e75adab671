"""Starting from an earlier run: ``latest`` or a run id, checked before anything starts; the
chosen checkpoint is copied into the new run's own prefix, and the trainer loads the copy."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fanout import handler
from fanout.errors import FanoutError
from fanout_builders import BUCKET, make_asset, make_event, make_props
from fanout_world import World

BASE = "experiments/base"
CHECKPOINTS = {
    "best_checkpoint": {"name": "7_Step-9000.ckpt", "avg_eval_metric": 81.0, "time_stamp": 1.0},
    "last_checkpoint": {"name": "9_Step-11000.ckpt", "avg_eval_metric": 64.0, "time_stamp": 2.0},
}


def _pretrained_props(**trainer: str) -> dict[str, Any]:
    props = make_props(2, "batch")
    props["Trainer"] = {
        **props["Trainer"],
        "PretrainedBucket": BUCKET,
        "PretrainedPrefix": BASE,
        "PretrainedCheckpoint": "best",
        **trainer,
    }
    return props


def _put(world: World, key: str, document: dict[str, Any]) -> None:
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(document).encode())


# What a trainer leaves in model/ for each kept checkpoint (TensorFlow's three files) and its
# frozen graph (not read when loading).
CHECKPOINT_FILES = (".index", ".data-00000-of-00001", ".meta")


def _model(
    world: World, prefix: str, kept: tuple[str, ...] = ("7_Step-9000", "9_Step-11000")
) -> None:
    _put(world, f"{prefix}/model/deepracer_checkpoints.json", CHECKPOINTS)
    for name in kept:
        for suffix in CHECKPOINT_FILES:
            world.s3.put_object(
                Bucket=BUCKET,
                Key=f"{prefix}/model/{name}.ckpt{suffix}",
                Body=f"{name}{suffix}".encode(),
            )
        world.s3.put_object(
            Bucket=BUCKET, Key=f"{prefix}/model/model_{name.split('_')[0]}.pb", Body=b"pb"
        )
    world.s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}/model/.coach_checkpoint", Body=b"9_Step-11000.ckpt"
    )


def test_latest_names_the_run_the_other_experiment_records(world: World) -> None:
    source = f"{BASE}/runs/base-0a0b0c0d"
    _put(world, f"{BASE}/run.json", {"runId": "base-0a0b0c0d"})
    _model(world, source)
    before = {k: world.read(k) for k in world.listing(BASE)}
    props = _pretrained_props(PretrainedRun="latest")
    world.put_asset(make_asset(props["Worlds"]))

    created, done = world.deploy(props)

    assert created["PretrainedPrefix"] == source
    assert done["IsComplete"] is True
    rid = created["PhysicalResourceId"]
    copy = f"experiments/demo/runs/{rid}/pretrained"
    # The trainer loads the copy in its own run's prefix
    (request,) = world.cloud.ops("CreateTrainingJob")
    hyper = request["HyperParameters"]
    assert hyper["pretrained_s3_bucket"] == BUCKET
    assert hyper["pretrained_s3_prefix"] == copy
    assert hyper["pretrained_checkpoint"] == "best"
    # ... which holds the best checkpoint's files, named by .coach_checkpoint and the
    # checkpoints file, and nothing else of the source (no frozen graph, no other checkpoint)
    assert sorted(k.rsplit("/", 1)[-1] for k in world.listing(f"{copy}/model")) == sorted(
        [".coach_checkpoint", "deepracer_checkpoints.json"]
        + [f"7_Step-9000.ckpt{suffix}" for suffix in CHECKPOINT_FILES]
    )
    assert world.read(f"{copy}/model/.coach_checkpoint") == "7_Step-9000.ckpt"
    named = json.loads(world.read(f"{copy}/model/deepracer_checkpoints.json"))
    assert (
        named["best_checkpoint"]["name"] == named["last_checkpoint"]["name"] == "7_Step-9000.ckpt"
    )
    assert world.read(f"{copy}/model/7_Step-9000.ckpt.index") == "7_Step-9000.index"
    # The source is read, never written
    assert {k: world.read(k) for k in world.listing(BASE)} == before
    record = json.loads(world.read("experiments/demo/run.json"))
    assert record["pretrained"] == {
        "bucket": BUCKET,
        "prefix": source,
        "checkpoint": "best",
        "run": "base-0a0b0c0d",
        "copy": copy,
    }


def test_a_pruned_checkpoint_fails_before_anything_starts(world: World) -> None:
    source = f"{BASE}/runs/base-0a0b0c0d"
    _model(world, source, kept=("9_Step-11000",))  # the best (7) was pruned
    props = _pretrained_props(PretrainedRun="base-0a0b0c0d")
    world.put_asset(make_asset(props["Worlds"]))
    with pytest.raises(
        FanoutError,
        match=re.escape(
            "has no 7_Step-9000.ckpt.index and .data-* files (checkpoints kept: 9_Step-11000.ckpt)"
        ),
    ):
        handler.on_event(make_event("Create", props), None)
    assert world.cloud.job_calls() == []


def test_latest_is_resolved_once_per_run(world: World) -> None:
    """A newer run of the base experiment recorded between on_event and is_complete does not
    change the model this run starts from."""
    _put(world, f"{BASE}/run.json", {"runId": "base-0a0b0c0d"})
    _model(world, f"{BASE}/runs/base-0a0b0c0d")
    props = _pretrained_props(PretrainedRun="latest")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    _put(world, f"{BASE}/run.json", {"runId": "base-11111111"})

    world.poll(props, created)

    (request,) = world.cloud.ops("CreateTrainingJob")
    rid = created["PhysicalResourceId"]
    assert (
        request["HyperParameters"]["pretrained_s3_prefix"]
        == f"experiments/demo/runs/{rid}/pretrained"
    )
    assert json.loads(world.read("experiments/demo/run.json"))["pretrained"]["prefix"] == (
        f"{BASE}/runs/base-0a0b0c0d"
    )


def test_a_run_id_and_a_model_prefix_are_taken_as_given(world: World) -> None:
    _model(world, f"{BASE}/runs/base-22222222")
    _model(world, BASE)
    by_id = _pretrained_props(PretrainedRun="base-22222222")
    world.put_asset(make_asset(by_id["Worlds"]))
    assert world.create(by_id)["PretrainedPrefix"] == f"{BASE}/runs/base-22222222"
    as_model = _pretrained_props()  # no PretrainedRun: the prefix holds model/ itself
    assert world.create(as_model, request_id="req-2")["PretrainedPrefix"] == BASE


@pytest.mark.parametrize(
    ("documents", "trainer", "reason"),
    [
        ({}, {"PretrainedRun": "latest"}, "records no run (has that experiment been deployed?)"),
        (
            {f"{BASE}/run.json": {"runId": "base-0a0b0c0d"}},
            {"PretrainedRun": "latest"},
            "model/deepracer_checkpoints.json does not exist: that run has not saved a "
            "checkpoint yet",
        ),
        (
            {
                f"{BASE}/runs/base-0a0b0c0d/model/deepracer_checkpoints.json": {
                    "last_checkpoint": CHECKPOINTS["last_checkpoint"]
                }
            },
            {"PretrainedRun": "base-0a0b0c0d", "PretrainedCheckpoint": "best"},
            "names no best checkpoint",
        ),
    ],
    ids=["never deployed", "no checkpoint yet", "no best checkpoint"],
)
def test_a_pretrained_model_that_cannot_load_fails_before_anything_starts(
    world: World, documents: dict[str, Any], trainer: dict[str, str], reason: str
) -> None:
    for key, document in documents.items():
        _put(world, key, document)
    props = _pretrained_props(**trainer)
    world.put_asset(make_asset(props["Worlds"]))

    with pytest.raises(FanoutError, match=re.escape(reason)):
        handler.on_event(make_event("Create", props), None)
    assert world.cloud.job_calls() == []


def test_a_refused_checkpoint_read_names_the_key_and_why(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError
    from fanout import files

    def refused(_s3: Any, _retry: Any, bucket: str, key: str) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    monkeypatch.setattr(files, "read_json", refused)
    props = _pretrained_props(PretrainedRun="base-0a0b0c0d")
    world.put_asset(make_asset(props["Worlds"]))
    with pytest.raises(FanoutError) as caught:
        handler.on_event(make_event("Create", props), None)
    assert str(caught.value) == (
        f"pretrained: cannot read s3://{BUCKET}/{BASE}/runs/base-0a0b0c0d/model/"
        "deepracer_checkpoints.json: AccessDenied (the fan-out may read only the pretrained "
        "model the experiment file names)"
    )
