"""Files under the prefix (moto S3), is_complete/Data/run.json, Update semantics, retry policy."""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from fanout import files, handler
from fanout.errors import AssetError, FanoutError, StartError
from fanout.retry import Retrier, ThrottledTooLongError, bounded_map
from fanout_builders import (
    ACCOUNT,
    BUCKET,
    PREFIX,
    REGION,
    client_error,
    make_asset,
    make_event,
    make_props,
    make_update,
    yaml_for,
)
from fanout_world import World

from rollouts import contract
from rollouts.render import render_files
from rollouts.spec import load_variants

# --------------------------------------------------------------------------- files


def _runs(run_id: str) -> str:
    """A run's data prefix, as README.md ("One prefix per run") documents it."""
    return f"{PREFIX}/runs/{run_id}"


def test_identical_workers_share_one_filled_yaml(world: World) -> None:
    props = make_props(3, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    run_id = world.deploy(props)[0]["PhysicalResourceId"]
    data = _runs(run_id)

    assert world.listing() == [
        f"{PREFIX}/fanout/{run_id}.json",  # the start marker: the Batch job id once known
        f"{PREFIX}/fanout/request.json",  # the latest CloudFormation request
        f"{PREFIX}/run.json",  # the experiment's record of its current run
        f"{data}/hyperparameters.json",
        f"{data}/model/model_metadata.json",
        f"{data}/reward_function.py",
        f"{data}/training_params.yaml",
    ]
    params = yaml.safe_load(world.read(f"{data}/training_params.yaml"))
    assert params["SAGEMAKER_SHARED_S3_BUCKET"] == BUCKET
    assert params["SAGEMAKER_SHARED_S3_PREFIX"] == data
    assert params["MODEL_METADATA_FILE_S3_KEY"] == f"{data}/model/model_metadata.json"
    assert params["AWS_REGION"] == REGION
    assert params["ROBOMAKER_SIMULATION_JOB_ACCOUNT_ID"] == ACCOUNT
    assert (
        params["TRAINING_JOB_ARN"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{run_id}"
    )
    assert params["KINESIS_VIDEO_STREAM_NAME"] is None or params["KINESIS_VIDEO_STREAM_NAME"] == ""
    assert "{{" not in world.read(f"{data}/training_params.yaml")
    job = next(iter(world.cloud.batch_jobs.values()))
    env = {e["name"]: e["value"] for e in job["request"]["containerOverrides"]["environment"]}
    assert env["ROLLOUT_YAML_NAMES"] == "training_params.yaml"
    assert env["SAGEMAKER_SHARED_S3_PREFIX"] == data


def test_workers_that_differ_get_one_yaml_each(world: World) -> None:
    props = make_props(3, "robomaker", video=True)  # a stream per worker makes them differ
    world.put_asset(make_asset(props["Worlds"]))
    run_id = world.deploy(props)[0]["PhysicalResourceId"]
    data = _runs(run_id)

    keys = world.listing()
    assert f"{data}/training_params.yaml" not in keys
    for i in range(3):
        text = world.read(f"{data}/training_params_{i}.yaml")
        assert yaml.safe_load(text)["KINESIS_VIDEO_STREAM_NAME"] == f"rollouts-demo-{i}"
    batch = next(iter(world.cloud.sim_batches.values()))
    envs = [
        r["simulationApplications"][0]["launchConfig"]["environmentVariables"]
        for r in batch["request"]["createSimulationJobRequests"]
    ]
    # Names relative to SAGEMAKER_SHARED_S3_PREFIX, which the simapp joins to them.
    assert [e["S3_YAML_NAME"] for e in envs] == [f"training_params_{i}.yaml" for i in range(3)]
    assert {e["SAGEMAKER_SHARED_S3_PREFIX"] for e in envs} == {data}
    assert all(f"{data}/{e['S3_YAML_NAME']}" in keys for e in envs)


def test_a_run_never_sees_an_earlier_runs_model_or_handshake(world: World) -> None:
    """What an earlier run left behind - its .finished, checkpoints and trainer address, in the
    old shared layout or under its own run prefix - stays where it is, and the new run's
    trainer and rollouts share a prefix that holds none of it."""
    leftovers = [
        f"{PREFIX}/model/.finished",
        f"{PREFIX}/model/model_7.pb",
        f"{PREFIX}/ip/done",
        f"{PREFIX}/runs/demo-00000000/model/.finished",
        f"{PREFIX}/runs/demo-00000000/ip/ip.json",
        "experiments/other/ip/done",
    ]
    for key in leftovers:
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"old")
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))

    run_id = world.deploy(props)[0]["PhysicalResourceId"]

    data = _runs(run_id)
    keys = world.listing("experiments/")
    assert set(leftovers) <= set(keys), "earlier data is never deleted"
    assert not [k for k in keys if k.startswith((f"{data}/model/.", f"{data}/ip/"))]
    (training,) = world.cloud.ops("CreateTrainingJob")
    (submit,) = world.cloud.ops("SubmitJob")
    env = {e["name"]: e["value"] for e in submit["containerOverrides"]["environment"]}
    assert training["HyperParameters"]["s3_prefix"] == data
    assert env["SAGEMAKER_SHARED_S3_PREFIX"] == data


def test_two_runs_of_one_experiment_share_no_model_or_ip(world: World) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "Tags": {"team": "research", "try": "2"}}
    update = make_update(new, old, old_id)
    result = handler.on_event(update, None)
    world.poll(new, result, event=update)
    new_id = result["PhysicalResourceId"]

    prefixes = [p["HyperParameters"]["s3_prefix"] for p in world.cloud.ops("CreateTrainingJob")]
    shared = [
        {e["name"]: e["value"] for e in p["containerOverrides"]["environment"]}[
            "SAGEMAKER_SHARED_S3_PREFIX"
        ]
        for p in world.cloud.ops("SubmitJob")
    ]
    assert prefixes == shared == [_runs(old_id), _runs(new_id)]
    record = json.loads(world.read(f"{PREFIX}/run.json"))
    assert record["runId"] == new_id and record["dataPrefix"] == _runs(new_id)
    assert record["pretrained"] is None


def test_handshake_markers_of_the_run_are_cleared_before_its_trainer_starts(
    world: World,
) -> None:
    props = make_props(1, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)  # plans only; the run id is known from here on
    data = _runs(created["PhysicalResourceId"])
    world.s3.put_object(Bucket=BUCKET, Key=f"{data}/ip/done", Body=b"old")
    seen: list[list[str]] = []
    original = world.cloud._CreateTrainingJob

    def create_and_look(params: dict) -> dict:
        seen.append(world.listing(f"{data}/ip/"))
        return original(params)

    world.cloud._CreateTrainingJob = create_and_look  # type: ignore[method-assign]
    world.poll(props, created)
    assert seen == [[]]


def test_unknown_placeholder_is_an_asset_error() -> None:
    with pytest.raises(AssetError, match=r"training_params_0.yaml has placeholder \{\{stream\}\}"):
        files.fill_placeholders("X: {{stream}}", {"bucket": "b"}, "training_params_0.yaml")


def test_render_is_deterministic_and_fills_all_placeholders() -> None:
    asset = files.parse_asset(make_asset(["A", "B"]), 2)
    values = {
        "bucket": "b",
        "prefix": "p",
        "region": "r",
        "account": "1",
        "training_job_arn": "arn",
    }
    first = files.render(asset, values, ["", ""])
    assert first == files.render(asset, values, ["", ""])
    assert first.worker_yaml_keys == ("training_params_0.yaml", "training_params_1.yaml")
    assert all(b"{{" not in body for body in first.objects.values())
    assert first.hyperparameters["lr"] == "0.0003" and first.hyperparameters["batch_size"] == "64"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda m: m.pop("worker_params"), "lacks 'worker_params'"),
        (lambda m: m["files"].append({"source": "missing.py", "key": "x.py"}), "lacks missing.py"),
    ],
)
def test_malformed_assets_are_reported(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    data = make_asset(["A"])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    manifest = json.loads(members["manifest.json"])
    mutate(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    with pytest.raises(AssetError, match=message):
        files.parse_asset(buffer.getvalue(), 1)


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "experiment", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.stem
)
def test_rollouts_render_output_is_filled_completely(experiment: Path) -> None:
    """The real synthesized bundle of each example experiment (rollouts.render) fills completely
    (a sweep: its first variant)."""
    spec = load_variants(experiment)[0]
    bundle = render_files(spec)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in bundle.items():
            archive.writestr(name, text)
    n = spec.rollouts.count
    asset = files.parse_asset(buffer.getvalue(), n)
    values = {
        "bucket": BUCKET,
        "prefix": PREFIX,
        "region": REGION,
        "account": ACCOUNT,
        "training_job_arn": "arn:aws:sagemaker:eu-west-1:123456789012:training-job/x",
    }
    rendered = files.render(asset, values, [f"stream-{i}" for i in range(n)])
    mandatory = contract.MANDATORY_TRAINING_KEYS
    for i, key in enumerate(rendered.worker_yaml_keys):
        text = rendered.objects[key].decode()
        assert "{{" not in text and "}}" not in text
        params = yaml.safe_load(text)
        assert all(params.get(k) for k in mandatory), f"worker {i} of {experiment.name}"
        assert params["SAGEMAKER_SHARED_S3_BUCKET"] == BUCKET
        assert params["KINESIS_VIDEO_STREAM_NAME"] == f"stream-{i}"
        assert params["MODEL_METADATA_FILE_S3_KEY"] == f"{PREFIX}/{asset.model_metadata_key}"


# --------------------------------------------------------------------------- completion


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_data_stays_small_for_1000_rollouts_and_run_json_has_them_all(
    world: World, backend: str
) -> None:
    props = make_props(1000, backend)
    world.put_asset(make_asset(props["Worlds"]))

    created, done = world.deploy(props)  # WaitFor ACCEPTED (default)

    assert done["IsComplete"] is True
    response = {
        "Status": "SUCCESS",
        "PhysicalResourceId": created["PhysicalResourceId"],
        "Data": done["Data"],
        "StackId": "x" * 120,
        "RequestId": "x" * 36,
        "LogicalResourceId": "Run",
        "Reason": "OK",
    }
    assert len(json.dumps(response)) < 1024, "far below CloudFormation's 4 KB response limit"
    assert len(json.dumps(created)) < 256, "the waiter's input stays small too"
    data = done["Data"]
    assert data["RunId"] == data["TrainingJobName"] == created["PhysicalResourceId"]
    assert data["RolloutCount"] == 1000
    assert data["RunManifestKey"] == f"{PREFIX}/run.json"
    assert ("RolloutJobId" in data) == (backend == "batch")
    assert ("SimulationJobBatchArn" in data) == (backend == "robomaker")
    manifest = json.loads(world.read(f"{PREFIX}/run.json"))
    assert len(manifest["workers"]) == 1000
    assert manifest["data"] == data
    if backend == "batch":
        assert manifest["workers"][999]["batchJobId"] == f"{data['RolloutJobId']}:999"
    else:
        assert len(manifest["simulationJobArns"]) == 1000


def test_wait_for_running_waits_for_trainer_training_and_every_rollout(world: World) -> None:
    props = make_props(3, "robomaker", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}
    batch = next(iter(world.cloud.sim_batches.values()))
    for job in batch["createdRequests"]:
        job["status"] = "Running"
    assert world.poll(props, created) == {"IsComplete": False}, "trainer is still Starting"
    world.cloud.set_trainer(created["PhysicalResourceId"], "InProgress", "Training")
    assert world.poll(props, created)["IsComplete"] is True
    assert world.cloud.count("StartSimulationJobBatch") == 1, "later polls find it by token"


def test_delete_and_noop_is_complete_make_no_calls(world: World) -> None:
    props = make_props(2, "batch")
    assert handler.is_complete(make_event("Delete", props, physical_id="demo-0123abcd"), None) == {
        "IsComplete": True
    }
    # NoOp: on_event's no-op result (an identical update) merged into the event.
    update = make_event(
        "Update", props, physical_id="demo-0123abcd", old_props=props, request_id="req-2"
    )
    noop = {"PhysicalResourceId": "demo-0123abcd", "Data": {"RunId": "x"}, "NoOp": True}
    assert handler.is_complete({**update, **noop}, None) == {"IsComplete": True}
    assert world.cloud.calls == []
    assert world.listing() == [], "no S3 write either"


# --------------------------------------------------------------------------- update


def _active_batch_names(world: World) -> list[str]:
    return [world.cloud.batch_jobs[j]["jobName"] for j in world.cloud.active_batch_jobs()]


def test_update_with_identical_properties_is_a_noop(world: World) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, done = world.deploy(props)
    world.cloud.calls.clear()
    new_token = {**props, "ServiceToken": props["ServiceToken"] + "-v2"}

    update = make_update(new_token, props, created["PhysicalResourceId"])
    result = handler.on_event(update, None)

    assert result["PhysicalResourceId"] == created["PhysicalResourceId"]
    assert result["Data"] == done["Data"], "attributes keep resolving"
    assert handler.is_complete({**update, **result}, None) == {"IsComplete": True}
    assert world.cloud.calls == [], "no job API call at all"


def test_update_with_changed_properties_stops_the_old_run_and_starts_a_new_one(
    world: World,
) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "Tags": {"team": "research", "try": "2"}}
    update = make_update(new, old, old_id)

    result = handler.on_event(update, None)

    new_id = result["PhysicalResourceId"]
    assert new_id != old_id and new_id.startswith("demo-")
    assert result == {
        "PhysicalResourceId": new_id,
        "PreviousRunId": old_id,
        "PlannedAt": result["PlannedAt"],
        "SharedYaml": True,
    }
    assert world.cloud.active_trainers() == [old_id], "on_event stops nothing"

    done = world.poll(new, result, event=update)

    assert done["IsComplete"] is True and done["Data"]["RunId"] == new_id
    assert world.cloud.active_trainers() == [new_id]
    assert _active_batch_names(world) == [new_id]
    stop_old = world.cloud.ops("StopTrainingJob")
    create_new = world.cloud.ops("CreateTrainingJob")
    assert [p["TrainingJobName"] for p in stop_old] == [old_id]
    assert world.cloud.calls.index(("StopTrainingJob", stop_old[0])) < world.cloud.calls.index(
        ("CreateTrainingJob", create_new[-1])
    ), "the old run is stopped before the new one starts"
    # CloudFormation then deletes the old id: nothing left to stop, nothing fails.
    before = world.cloud.job_calls()
    handler.on_event(make_event("Delete", old, request_id="req-3", physical_id=old_id), None)
    assert world.cloud.job_calls() == before


@pytest.mark.parametrize(
    ("change", "asset_worlds", "error"),
    [
        ({"RolloutCount": "0"}, 2, "RolloutCount is 0"),
        ({"RolloutCount": "3", "Worlds": ["a", "b", "c"]}, 2, "RolloutCount is 3"),
    ],
    ids=["malformed property", "asset does not fit"],
)
def test_update_that_cannot_be_planned_changes_nothing(
    world: World, change: dict, asset_worlds: int, error: str
) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    world.put_asset(make_asset(["reInvent2019_track"] * asset_worlds))
    world.cloud.calls.clear()
    keys = {k: world.read(k) for k in world.listing()}

    with pytest.raises(FanoutError, match=error):
        handler.on_event(make_update({**old, **change}, old, old_id), None)

    assert world.cloud.calls == [] and world.cloud.active_trainers() == [old_id]
    assert _active_batch_names(world) == [old_id]
    assert {k: world.read(k) for k in world.listing()} == keys

    # CloudFormation rolls back with the old properties: the old run is still the one.
    rollback = make_update(old, {**old, **change}, old_id, request_id="req-rollback")
    result = handler.on_event(rollback, None)
    assert result["PhysicalResourceId"] == old_id and result["NoOp"] is True
    assert result["Data"]["RunId"] == old_id
    assert world.poll(old, result, event=rollback) == {"IsComplete": True}
    assert world.cloud.job_calls() == [] and world.cloud.active_trainers() == [old_id]


def _run_then_update(
    world: World,
) -> tuple[dict[str, Any], dict[str, Any], str, dict[str, Any], dict[str, Any]]:
    """A running batch run with ``old`` properties, and the on_event of an update to ``new``:
    (old, new, old run id, update event, on_event result)."""
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "Tags": {"try": "2"}}
    update = make_update(new, old, old_id)
    return old, new, old_id, update, handler.on_event(update, None)


def test_update_whose_old_run_stop_is_throttled_polls_again(world: World) -> None:
    _old, new, _old_id, update, result = _run_then_update(world)
    world.cloud.throttle("StopTrainingJob", times=10_000)

    assert world.poll(new, result, event=update) == {"IsComplete": False}
    assert world.cloud.count("CreateTrainingJob") == 1, "the new run waits for the old to stop"
    world.cloud.faults.clear()
    assert world.poll(new, result, event=update)["IsComplete"] is True
    assert world.cloud.active_trainers() == [result["PhysicalResourceId"]]


@pytest.mark.parametrize("rollback_names", ["old id", "failed id"])
def test_failed_update_stops_both_runs_and_the_rollback_starts_the_old_properties(
    world: World, rollback_names: str
) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    new = {**old, "WaitFor": "RUNNING"}
    update = make_update(new, old, old_id)
    result = handler.on_event(update, None)
    new_id = result["PhysicalResourceId"]
    world.cloud.inject("SubmitJob", "ClientException", message="queue disabled")

    with pytest.raises(StartError, match=f"run {new_id} failed to start: .*queue disabled"):
        world.poll(new, result, event=update)
    assert world.cloud.active_trainers() == [] and world.cloud.active_batch_jobs() == []

    # Rollback: an Update back to the old properties is a new run with those properties.
    physical = old_id if rollback_names == "old id" else new_id
    rollback = make_update(old, new, physical, request_id="req-rollback")
    back = handler.on_event(rollback, None)
    back_id = back["PhysicalResourceId"]
    assert back_id not in (old_id, new_id) and back["PreviousRunId"] == physical
    assert world.poll(old, back, event=rollback)["IsComplete"] is True
    assert world.cloud.active_trainers() == [back_id]
    assert _active_batch_names(world) == [back_id]
    manifest = json.loads(world.read(f"{PREFIX}/run.json"))
    assert manifest["runId"] == back_id

    # Then CloudFormation deletes whichever ids it no longer needs, each with its properties.
    for gone, gone_props in ((old_id, old), (new_id, new)):
        delete = make_event("Delete", gone_props, physical_id=gone, request_id="req-del")
        handler.on_event(delete, None)
    assert world.cloud.active_trainers() == [back_id]
    assert _active_batch_names(world) == [back_id]


# --------------------------------------------------------------------------- retry policy


def _throttle() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "slow down"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "StartSimulationJobBatch",
    )


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    sleeps: list[float] = []
    now = [0.0]
    retry = Retrier(
        base_delay=0.2,
        max_delay=5,
        budget_seconds=1e9,
        sleep=lambda s: (sleeps.append(s), now.__setitem__(0, now[0] + s)),
        rand=lambda: 1.0,
        clock=lambda: now[0],
    )
    calls = iter([_throttle()] * 8 + ["ok"])

    def flaky() -> str:
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry.call("op", flaky) == "ok"
    assert sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 5, 5, 5]


def test_throttled_past_the_budget_gives_a_clear_error() -> None:
    now = [0.0]
    retry = Retrier(
        budget_seconds=30,
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        rand=lambda: 1.0,
        clock=lambda: now[0],
    )

    def always() -> None:
        raise _throttle()

    with pytest.raises(
        ThrottledTooLongError, match=r"still throttled after .* nothing was started"
    ):
        retry.call("robomaker:StartSimulationJobBatch", always)
    assert now[0] <= 30


def test_server_errors_are_not_retried_for_non_idempotent_calls() -> None:
    error = ClientError(
        {
            "Error": {"Code": "InternalServerError", "Message": "x"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        },
        "Op",
    )
    attempts = []

    def fail() -> None:
        attempts.append(1)
        raise error

    with pytest.raises(ClientError):
        Retrier(sleep=lambda s: None).call("op", fail, idempotent=False)
    assert len(attempts) == 1
    with pytest.raises(ClientError):
        Retrier(sleep=lambda s: None, transient_attempts=3).call("op", fail, idempotent=True)
    assert len(attempts) == 1 + 3


def test_bounded_map_keeps_order_and_caps_concurrency() -> None:
    active, peak, lock = [0], [0], threading.Lock()

    def work(i: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return i * i

    assert bounded_map(work, range(20), 4) == [i * i for i in range(20)]
    assert peak[0] <= 4


def test_yaml_fixture_is_the_simapp_shape() -> None:
    assert yaml.safe_load(yaml_for("Oval_track"))["WORLD_NAME"] == "Oval_track"


# --------------------------------------------------------------------------- review findings


def _update_that_cannot_stop_the_old_run(
    world: World,
) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """Run R1 with ``old``, then an update to ``new`` (R2) that fails while stopping R1."""
    old, new, r1, update, result = _run_then_update(world)
    world.cloud.inject("StopTrainingJob", "AccessDeniedException", message="denied", times=1)
    with pytest.raises(StartError, match=f"could not stop the previous run {r1}: .*denied"):
        world.poll(new, result, event=update)
    assert world.cloud.active_trainers() == [r1], "R1 still runs, R2 never started"
    return old, new, r1, result["PhysicalResourceId"]


def test_update_whose_old_run_cannot_be_stopped_and_its_rollback_on_the_failed_id(
    world: World,
) -> None:
    """Update R1->R2 fails while stopping R1; the rollback arrives with PhysicalResourceId R2 and
    the old properties. It must stop R1 too (run.json lists it as not confirmed stopped): in the
    end only the run the rollback starts runs."""
    old, new, r1, r2 = _update_that_cannot_stop_the_old_run(world)
    manifest = json.loads(world.read(f"{PREFIX}/run.json"))
    assert manifest["supersededBy"] == r2
    assert [e["runId"] for e in manifest["unstoppedRuns"]] == [r1]

    rollback = make_update(old, new, r2, request_id="req-rollback")
    back = handler.on_event(rollback, None)
    r3 = back["PhysicalResourceId"]
    assert r3 not in (r1, r2) and back["PreviousRunId"] == r2
    assert world.poll(old, back, event=rollback)["IsComplete"] is True

    assert world.cloud.active_trainers() == [r3]
    assert _active_batch_names(world) == [r3]
    assert json.loads(world.read(f"{PREFIX}/run.json")).get("unstoppedRuns") in (None, [])
    for gone, gone_props in ((r2, new), (r1, old)):
        handler.on_event(make_event("Delete", gone_props, physical_id=gone), None)
    assert world.cloud.active_trainers() == [r3]


def test_update_plans_before_it_stops_the_old_run(world: World) -> None:
    """The asset is unreadable when is_complete starts the update: the old run keeps running."""
    _old, new, old_id, update, result = _run_then_update(world)
    world.put_asset(b"not a zip any more")

    with pytest.raises(StartError, match="not a zip archive"):
        world.poll(new, result, event=update)
    assert world.cloud.active_trainers() == [old_id]
    assert _active_batch_names(world) == [old_id]
    assert world.cloud.count("StopTrainingJob") == 0


def test_update_stops_nothing_when_run_json_cannot_be_read(world: World) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/run.json", Body=b"{not json")
    new = {**old, "Tags": {"try": "2"}}
    update = make_update(new, old, old_id)
    result = handler.on_event(update, None)

    with pytest.raises(StartError, match=r"JSONDecodeError|Expecting"):
        world.poll(new, result, event=update)
    assert world.cloud.active_trainers() == [old_id]
    assert world.cloud.count("StopTrainingJob") == 0 and world.cloud.count("CancelJob") == 0


def test_changing_the_backend_is_refused_and_touches_nothing(world: World) -> None:
    old = make_props(2, "batch")
    world.put_asset(make_asset(old["Worlds"]))
    old_id = world.deploy(old)[0]["PhysicalResourceId"]
    world.cloud.calls.clear()
    new = make_props(2, "robomaker")

    with pytest.raises(FanoutError) as raised:
        handler.on_event(make_update(new, old, old_id), None)

    assert "destroy the experiment stack and deploy it again to change the rollout backend" in str(
        raised.value
    )
    assert "\n" not in str(raised.value)
    assert world.cloud.calls == [], "nothing stopped, nothing started"
    assert world.cloud.active_trainers() == [old_id] and _active_batch_names(world) == [old_id]
    # The rollback (old properties, old id) recognises the old run: a no-op.
    rollback = make_update(old, new, old_id, request_id="req-rollback")
    assert handler.on_event(rollback, None)["NoOp"] is True


def test_a_healthy_run_is_not_torn_down_when_run_json_cannot_be_written(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created = world.create(props)
    write = files.write_json
    failing = {"left": 1}

    def flaky(s3: Any, retry: Any, bucket: str, key: str, doc: Any, **kw: Any) -> None:
        if key.endswith("/run.json") and failing["left"]:
            failing["left"] -= 1
            # A failure for now; a refusal for good is another case.
            raise client_error("InternalError", 500)
        write(s3, retry, bucket, key, doc, **kw)

    monkeypatch.setattr(files, "write_json", flaky)

    assert world.poll(props, created) == {"IsComplete": False}, "poll again, stop nothing"
    assert world.cloud.count("StopTrainingJob") == 0 and world.cloud.count("CancelJob") == 0
    world.put_asset(b"the asset is gone")  # finishing must not re-read it
    done = world.poll(props, created)
    assert done["IsComplete"] is True
    assert json.loads(world.read(f"{PREFIX}/run.json"))["runId"] == created["PhysicalResourceId"]


def test_robomaker_foreign_batches_are_skipped_and_tokens_match_exactly(world: World) -> None:
    """Other experiments' batches answer AccessDenied (the IAM condition on the experiment tag);
    a batch whose token merely starts with the run id is not ours."""
    props = make_props(2, "robomaker", wait_for="RUNNING")
    world.put_asset(make_asset(props["Worlds"]))
    created, first = world.deploy(props)
    assert first == {"IsComplete": False}
    run_id = created["PhysicalResourceId"]
    cloud = world.cloud
    cloud.sim_batches["arn:foreign"] = {
        "arn": "arn:foreign",
        "status": "InProgress",
        "clientRequestToken": "other-0000aaaa-b0",
        "tags": {"rollouts:experiment": "other"},
        "request": {},
        "createdRequests": [],
        "failedRequests": [],
    }
    cloud.sim_batches["arn:lookalike"] = {
        **cloud.sim_batches["arn:foreign"],
        "arn": "arn:lookalike",
        "clientRequestToken": f"{run_id}-b0x",
        "tags": {"rollouts:experiment": "demo"},
    }
    cloud.described_experiment = "demo"

    assert world.poll(props, created) == {"IsComplete": False}, "polling is not broken"
    handler.on_event(make_event("Delete", props, physical_id=run_id), None)

    assert world.cloud.active_trainers() == []
    assert sorted(world.cloud.active_sim_batches()) == ["arn:foreign", "arn:lookalike"]
    assert [p["batch"] for p in cloud.ops("CancelSimulationJobBatch")] == [
        a for a in cloud.sim_batches if a not in ("arn:foreign", "arn:lookalike")
    ]


def test_delete_also_stops_earlier_runs_an_update_could_not_stop(world: World) -> None:
    """Update R1->R2 fails while stopping R1 and the stack is then deleted instead of rolled
    back: the Delete of R2 stops R1 too, since run.json lists it as not confirmed stopped."""
    _old, new, _r1, r2 = _update_that_cannot_stop_the_old_run(world)

    handler.on_event(make_event("Delete", new, physical_id=r2, request_id="req-del"), None)

    assert world.cloud.active_trainers() == []
    assert _active_batch_names(world) == []


def test_a_noop_update_answers_within_4kb_whatever_run_json_holds(world: World) -> None:
    """An altered run.json (huge or unknown attributes) cannot push the response past
    CloudFormation's 4 KB: only the known attributes, of bounded size, are copied."""
    props = make_props(2, "batch")
    world.put_asset(make_asset(props["Worlds"]))
    created, done = world.deploy(props)
    run_id = created["PhysicalResourceId"]
    record = json.loads(world.read(f"{PREFIX}/run.json"))
    record["data"] = {**record["data"], "Extra": "x" * 10_000, "TrainingJobArn": "y" * 5000}
    world.s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/run.json", Body=json.dumps(record))
    new_token = {**props, "ServiceToken": props["ServiceToken"] + "-v2"}

    result = handler.on_event(make_update(new_token, props, run_id), None)

    assert len(json.dumps(result)) < 4096
    assert "Extra" not in result["Data"] and "TrainingJobArn" not in result["Data"]
    assert result["Data"]["RunId"] == run_id
    assert result["Data"]["RolloutJobId"] == done["Data"]["RolloutJobId"]
