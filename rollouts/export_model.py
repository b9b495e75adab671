"""The car's model archive: what a physical DeepRacer (and the console's model import) loads.

A SageMaker training job of the simapp leaves ``/opt/ml/model`` as ``output/model.tar.gz``:
``model_metadata.json`` at the top and ``agent/model.pb``, the frozen graph of the best
checkpoint (``bundle/markov/training_worker.py`` copies the metadata there;
``bundle/markov/architecture/.../tensorflow_model.py`` copies ``model_<best>.pb`` as
``agent/model.pb``). The trainer also uploads every frozen graph it keeps as
``<run>/model/model_<N>.pb`` and the metadata as ``<run>/model/model_metadata.json``; rollout
worker 0 names the best and last checkpoints in ``<run>/model/deepracer_checkpoints.json``
(``{"best_checkpoint": {"name": "<N>_Step-<M>.ckpt", ...}, "last_checkpoint": {...}}``; only
``name`` is read: deepracer-for-cloud writes fewer fields). So any kept checkpoint can be
exported in the same layout, from S3 or from a local copy of the run's prefix.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS_KEY = "model/deepracer_checkpoints.json"
METADATA_KEY = "model/model_metadata.json"
GRAPH = re.compile(r"^model_(\d+)\.pb$")
CHECKPOINT_NAME = re.compile(r"^(\d+)_Step-\d+\.ckpt$")

# key under the run's prefix -> bytes, or None when there is no such object
Reader = Callable[[str], bytes | None]
# the keys under the run's model/ folder
Lister = Callable[[], list[str]]


class ExportError(ValueError):
    """The checkpoint cannot be exported; the message says which and what exists."""


@dataclass(frozen=True)
class Exported:
    checkpoint: int
    chosen_by: str  # "best", "last" or "number"
    members: tuple[str, ...]
    bytes_written: int


def frozen_graphs(keys: list[str]) -> list[int]:
    return sorted(
        int(match.group(1)) for key in keys if (match := GRAPH.match(key.rsplit("/", 1)[-1]))
    )


def choose(checkpoint: str, read: Reader, graphs: list[int], where: str) -> tuple[int, str]:
    """The checkpoint number that ``best``, ``last`` or ``N`` means for this run."""
    if checkpoint.isdigit():
        return int(checkpoint), "number"
    if checkpoint not in ("best", "last"):
        raise ExportError(f"--checkpoint {checkpoint!r}: use best, last or a checkpoint number")
    raw = read(CHECKPOINTS_KEY)
    if raw is None:
        raise ExportError(
            f"{where}/{CHECKPOINTS_KEY} does not exist (rollout worker 0 writes it after the "
            "first evaluation); give a checkpoint number instead"
            + (f": frozen graphs exist for {', '.join(map(str, graphs))}" if graphs else "")
        )
    try:
        name = json.loads(raw)[f"{checkpoint}_checkpoint"]["name"]
    except (ValueError, KeyError, TypeError):
        raise ExportError(
            f"{where}/{CHECKPOINTS_KEY}: no {checkpoint}_checkpoint.name in it"
        ) from None
    match = CHECKPOINT_NAME.match(str(name))
    if not match:
        raise ExportError(
            f"{where}/{CHECKPOINTS_KEY}: {checkpoint}_checkpoint.name {name!r} is not "
            "<N>_Step-<M>.ckpt"
        )
    return int(match.group(1)), checkpoint


def build_archive(number: int, read: Reader, graphs: list[int], where: str) -> bytes:
    graph = read(f"model/model_{number}.pb")
    if graph is None:
        kept = ", ".join(map(str, graphs)) or "none"
        raise ExportError(
            f"{where}/model/model_{number}.pb does not exist: checkpoint {number} has no frozen "
            f"graph (the trainer keeps the last few and the best; frozen graphs: {kept})"
        )
    metadata = read(METADATA_KEY)
    if metadata is None:
        raise ExportError(
            f"{where}/{METADATA_KEY} does not exist (the trainer writes it when it starts)"
        )
    check_metadata(metadata, f"{where}/{METADATA_KEY}")
    out = io.BytesIO()
    # Fixed order and times, and a gzip header without a timestamp or file name: the same
    # checkpoint always gives the same bytes.
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name, data in (("agent/model.pb", graph), ("model_metadata.json", metadata)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def check_metadata(raw: bytes, where: str) -> None:
    """The car loads model_metadata.json as the simapp does: refuse one the experiment file
    would refuse (rollouts/spec_models.py ModelMetadata), naming its first problems."""
    from pydantic import ValidationError  # noqa: PLC0415

    from rollouts.spec_models import ModelMetadata  # noqa: PLC0415

    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise ExportError(f"{where} is not JSON ({error}): the car could not load it") from None
    try:
        ModelMetadata.model_validate(document)
    except ValidationError as error:
        found = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}"
            for e in error.errors()[:3]
        )
        raise ExportError(f"{where} is not a valid model_metadata.json: {found}") from None


def export(checkpoint: str, read: Reader, list_model: Lister, where: str, out: Path) -> Exported:
    graphs = frozen_graphs(list_model())
    number, chosen_by = choose(checkpoint, read, graphs, where)
    data = build_archive(number, read, graphs, where)
    out.write_bytes(data)
    return Exported(number, chosen_by, ("agent/model.pb", "model_metadata.json"), len(data))


def local_reader(root: Path) -> tuple[Reader, Lister]:
    """A local copy of a run's prefix (``model/`` inside it), or of its ``model/`` folder
    itself (it holds the frozen graphs or the metadata directly)."""
    model = root / "model"
    if not model.is_dir() and any(
        GRAPH.match(p.name) or p.name == "model_metadata.json" for p in root.iterdir()
    ):
        model = root

    def read(key: str) -> bytes | None:
        path = model / key.removeprefix("model/") if key.startswith("model/") else root / key
        return path.read_bytes() if path.is_file() else None

    def list_model() -> list[str]:
        return sorted(p.name for p in model.iterdir()) if model.is_dir() else []

    return read, list_model
