"""Starting from an earlier run: ``latest`` or a run id, checked before anything starts."""

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


def test_latest_names_the_run_the_other_experiment_records(world: World) -> None:
    _put(world, f"{BASE}/run.json", {"runId": "base-0a0b0c0d"})
    _put(world, f"{BASE}/runs/base-0a0b0c0d/model/deepracer_checkpoints.json", CHECKPOINTS)
    props = _pretrained_props(PretrainedRun="latest")
    world.put_asset(make_asset(props["Worlds"]))

    created, done = world.deploy(props)

    assert created["PretrainedPrefix"] == f"{BASE}/runs/base-0a0b0c0d"
    assert done["IsComplete"] is True
    (request,) = world.cloud.ops("CreateTrainingJob")
    hyper = request["HyperParameters"]
    assert hyper["pretrained_s3_bucket"] == BUCKET
    assert hyper["pretrained_s3_prefix"] == f"{BASE}/runs/base-0a0b0c0d"
    assert hyper["pretrained_checkpoint"] == "best"
    record = json.loads(world.read("experiments/demo/run.json"))
    assert record["pretrained"] == {
        "bucket": BUCKET,
        "prefix": f"{BASE}/runs/base-0a0b0c0d",
        "checkpoint": "best",
        "run": "base-0a0b0c0d",
    }


def test_latest_is_resolved_once_per_run(world: World) -> None:
    """A newer run of the base experiment recorded between on_event and is_complete does not
    change the model this run starts from."""
    _put(world, f"{BASE}/run.json", {"runId": "base-0a0b0c0d"})
    _put(world, f"{BASE}/runs/base-0a0b0c0d/model/deepracer_checkpoints.json", CHECKPOINTS)
    props = _pretrained_props(PretrainedRun="latest")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    _put(world, f"{BASE}/run.json", {"runId": "base-11111111"})

    world.poll(props, created)

    (request,) = world.cloud.ops("CreateTrainingJob")
    assert request["HyperParameters"]["pretrained_s3_prefix"] == f"{BASE}/runs/base-0a0b0c0d"


def test_a_run_id_and_a_model_prefix_are_taken_as_given(world: World) -> None:
    _put(world, f"{BASE}/runs/base-22222222/model/deepracer_checkpoints.json", CHECKPOINTS)
    _put(world, f"{BASE}/model/deepracer_checkpoints.json", CHECKPOINTS)
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
