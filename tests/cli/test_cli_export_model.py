"""export-model: the car's archive from a local copy of a run's prefix and from S3 (moto), laid
out as the training job's output/model.tar.gz; clear errors when a checkpoint has no graph."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from aws_world import BUCKET, PREFIX, RUN, World
from cli_support import FIXTURES

# A real deepracer-for-cloud model_metadata.json (the shared fixtures).
METADATA = (FIXTURES / "drfc" / "model_metadata.json").read_bytes()
CHECKPOINTS = {
    # As rollout worker 0 writes it (bundle/markov/metrics/s3_metrics.py, TrainingMetrics).
    "best_checkpoint": {"name": "7_Step-1400.ckpt", "avg_eval_metric": 81.5, "time_stamp": 1.0},
    "last_checkpoint": {"name": "9_Step-1800.ckpt", "avg_eval_metric": 60.0, "time_stamp": 2.0},
}


def run_copy(root: Path, graphs: tuple[int, ...] = (6, 7, 8, 9)) -> dict[str, bytes]:
    files = {"model/model_metadata.json": METADATA}
    files["model/deepracer_checkpoints.json"] = json.dumps(CHECKPOINTS).encode()
    for n in graphs:
        files[f"model/model_{n}.pb"] = f"frozen graph {n}".encode()
        files[f"model/{n}_Step-{n * 200}.ckpt.index"] = b"index"
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return files


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as archive:
        return {
            m.name: archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
        }


def test_best_last_and_a_number_from_a_local_copy(run, tmp_path: Path):
    run_copy(tmp_path / "run")
    for checkpoint, graph in (("best", 7), ("last", 9), ("8", 8)):
        out = tmp_path / f"car-{checkpoint}.tar.gz"
        doc = run(
            "export-model", tmp_path / "run", "--checkpoint", checkpoint, "--out", out, "--json"
        ).json()
        assert doc["checkpoint"] == graph
        # What SageMaker's output/model.tar.gz holds: the metadata on top, the graph in agent/.
        assert members(out) == {
            "agent/model.pb": f"frozen graph {graph}".encode(),
            "model_metadata.json": METADATA,
        }
    again = tmp_path / "again.tar.gz"
    run("export-model", tmp_path / "run", "--out", again)
    assert again.read_bytes() == (tmp_path / "car-best.tar.gz").read_bytes(), "deterministic"
    # ... whenever it is written: the gzip header carries no time (bytes 4-7) and no name
    header = again.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0" and not header[3] & 0x08


def test_an_existing_archive_is_kept_without_force(run, tmp_path: Path):
    run_copy(tmp_path / "run")
    out = tmp_path / "car.tar.gz"
    out.write_bytes(b"the user's earlier archive")
    refused = run("export-model", tmp_path / "run", "--out", out)
    assert refused.code == 2 and "exists: pass --force to overwrite it" in refused.err
    assert out.read_bytes() == b"the user's earlier archive"
    assert run("export-model", tmp_path / "run", "--out", out, "--force").code == 0
    assert "agent/model.pb" in members(out)


def test_the_model_folder_itself_works_as_the_source(run, tmp_path: Path):
    run_copy(tmp_path / "run")
    out = tmp_path / "car.tar.gz"
    doc = run(
        "export-model", tmp_path / "run" / "model", "--checkpoint", "8", "--out", out, "--json"
    ).json()
    assert doc["checkpoint"] == 8 and members(out)["agent/model.pb"] == b"frozen graph 8"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (b"{not json", "is not JSON"),
        (
            b'{"action_space": [], "sensor": ["FRONT_FACING_CAMERA"]}',
            "action_space_type: Field required",
        ),
    ],
)
def test_an_invalid_model_metadata_is_not_packed(
    run, tmp_path: Path, metadata: bytes, message: str
):
    run_copy(tmp_path / "run")
    (tmp_path / "run" / "model" / "model_metadata.json").write_bytes(metadata)
    out = tmp_path / "car.tar.gz"
    result = run("export-model", tmp_path / "run", "--out", out)
    assert result.code == 2 and message in result.err, result.err
    assert "model/model_metadata.json" in result.err
    assert not out.exists()


def test_a_checkpoint_without_a_frozen_graph_is_a_clear_error(run, tmp_path: Path):
    run_copy(tmp_path / "run", graphs=(8, 9))  # the best (7) was pruned
    out = tmp_path / "car.tar.gz"
    result = run("export-model", tmp_path / "run", "--out", out)
    assert result.code == 2
    assert "model/model_7.pb does not exist: checkpoint 7 has no frozen graph" in result.err
    assert "frozen graphs: 8, 9" in result.err
    assert not out.exists()
    bad = run("export-model", tmp_path / "run", "--checkpoint", "newest", "--out", out)
    assert bad.code == 2 and "use best, last or a checkpoint number" in bad.err
    name = run("export-model", tmp_path / "run", "--out", tmp_path / "car.zip")
    assert name.code == 2 and "must end in .tar.gz" in name.err
    (tmp_path / "run" / "model" / "deepracer_checkpoints.json").unlink()
    missing = run("export-model", tmp_path / "run", "--out", out)
    assert missing.code == 2 and "give a checkpoint number instead" in missing.err


def test_from_the_deployed_run_in_s3(run, world: World, tmp_path: Path):
    world.stack()
    s3 = world.aws.clients["s3"]
    for key, data in run_copy(tmp_path / "local").items():
        s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/runs/{RUN}/{key}", Body=data)
    out = tmp_path / "car.tar.gz"
    doc = run("export-model", "reinvent-time-trial", "--out", out, "--json").json()
    assert doc["source"] == f"s3://{BUCKET}/{PREFIX}/runs/{RUN}"
    assert members(out)["agent/model.pb"] == b"frozen graph 7"
    world.done()
