"""The experiment's files under ``<Prefix>/``: read the synthesized asset, fill it, write it.

Contract: docs/fanout-contract.md ("The files asset"). Rendering is pure (bytes in, bytes out), so
``on_event`` (which only plans) and ``is_complete`` (which writes) compute the same keys.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from .errors import AssetError
from .retry import Retrier, error_code

PLACEHOLDERS = (
    "bucket",
    "prefix",
    "region",
    "account",
    "training_job_arn",
    "video_stream",
)
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
SHARED_PARAMS = "training_params.yaml"
CONTENT_TYPES = {".yaml": "application/x-yaml", ".json": "application/json", ".py": "text/x-python"}


@dataclass(frozen=True)
class Asset:
    manifest: Mapping[str, Any]
    members: Mapping[str, bytes]

    @property
    def model_metadata_key(self) -> str:
        return str(self.manifest["model_metadata_key"])

    @property
    def reward_function_key(self) -> str:
        return str(self.manifest["reward_function_key"])

    @property
    def training_algorithm(self) -> str:
        """``training_algorithm`` of the model metadata (the simapp's default: clipped_ppo)."""
        source = next(
            (
                str(e["source"])
                for e in self.manifest["files"]
                if e["key"] == self.model_metadata_key
            ),
            None,
        )
        try:
            metadata = json.loads(self.members[source]) if source else {}
        except ValueError as error:
            raise AssetError(f"files asset {source} is not JSON ({error})") from error
        algorithm = metadata.get("training_algorithm") if isinstance(metadata, dict) else None
        return algorithm if isinstance(algorithm, str) and algorithm else "clipped_ppo"


@dataclass(frozen=True)
class RenderedFiles:
    objects: Mapping[str, bytes]  # key relative to Prefix -> body
    worker_yaml_keys: tuple[str, ...]  # params file of each worker, relative to Prefix
    hyperparameters: Mapping[str, str]  # hyperparameters.json, every value a string

    @property
    def shared_yaml(self) -> bool:
        return len(set(self.worker_yaml_keys)) == 1


def parse_asset(data: bytes, rollout_count: int) -> Asset:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {
                name: archive.read(name) for name in archive.namelist() if not name.endswith("/")
            }
    except zipfile.BadZipFile as error:
        raise AssetError(f"files asset is not a zip archive ({error})") from error
    if "manifest.json" not in members:
        raise AssetError("files asset has no manifest.json")
    try:
        manifest = json.loads(members["manifest.json"])
    except ValueError as error:
        raise AssetError(f"files asset manifest.json is not JSON ({error})") from error
    if not isinstance(manifest, dict):
        raise AssetError("files asset manifest.json must be a JSON object")
    for key in (
        "worker_params",
        "files",
        "hyperparameters",
        "model_metadata_key",
        "reward_function_key",
    ):
        if key not in manifest:
            raise AssetError(f"files asset manifest.json lacks {key!r}")
    params = manifest["worker_params"]
    if not isinstance(params, list) or len(params) != rollout_count:
        shown = len(params) if isinstance(params, list) else repr(params)
        raise AssetError(
            f"files asset lists {shown} worker_params files; RolloutCount is {rollout_count}"
        )
    sources = [*params, manifest["hyperparameters"]]
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not {"source", "key"} <= set(entry):
            raise AssetError(f"files asset manifest entry {entry!r} needs 'source' and 'key'")
        sources.append(entry["source"])
    missing = sorted({str(s) for s in sources} - set(members))
    if missing:
        raise AssetError(f"files asset lacks {', '.join(missing[:5])} named by manifest.json")
    return Asset(manifest=manifest, members=members)


def fill_placeholders(text: str, values: Mapping[str, str], source: str) -> str:
    """Plain text substitution of ``{{name}}``; an unknown placeholder is an asset error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise AssetError(
                f"{source} has placeholder {{{{{name}}}}}; allowed: {', '.join(PLACEHOLDERS)}"
            )
        return values[name]

    return PLACEHOLDER_RE.sub(replace, text)


def hyperparameter_strings(raw: bytes) -> dict[str, str]:
    try:
        values = json.loads(raw)
    except ValueError as error:
        raise AssetError(f"hyperparameters file is not JSON ({error})") from error
    if not isinstance(values, dict):
        raise AssetError("hyperparameters file must be a JSON object")
    # SageMaker hyperparameters are strings; JSON spelling keeps 0.0003 and true unambiguous.
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}


def render(asset: Asset, common: Mapping[str, str], video_streams: list[str]) -> RenderedFiles:
    """Fill every worker's YAML; write one shared file when all N come out byte-identical."""
    per_worker: list[bytes] = []
    for i, name in enumerate(asset.manifest["worker_params"]):
        values = {**common, "video_stream": video_streams[i]}
        text = asset.members[name].decode("utf-8")
        per_worker.append(fill_placeholders(text, values, name).encode("utf-8"))

    objects: dict[str, bytes] = {}
    if len(set(per_worker)) == 1:
        objects[SHARED_PARAMS] = per_worker[0]
        yaml_keys = tuple(SHARED_PARAMS for _ in per_worker)
    else:
        yaml_keys = tuple(f"training_params_{i}.yaml" for i in range(len(per_worker)))
        objects.update(zip(yaml_keys, per_worker, strict=True))
    for entry in asset.manifest["files"]:
        objects[str(entry["key"])] = asset.members[str(entry["source"])]
    return RenderedFiles(
        objects=objects,
        worker_yaml_keys=yaml_keys,
        hyperparameters=hyperparameter_strings(
            asset.members[str(asset.manifest["hyperparameters"])]
        ),
    )


def read_asset(s3: Any, retry: Retrier, bucket: str, key: str, rollout_count: int) -> Asset:
    response = retry.call("s3:GetObject asset", lambda: s3.get_object(Bucket=bucket, Key=key))
    return parse_asset(response["Body"].read(), rollout_count)


def _content_type(key: str) -> str:
    for suffix, kind in CONTENT_TYPES.items():
        if key.endswith(suffix):
            return kind
    return "application/octet-stream"


def write_files(
    s3: Any, retry: Retrier, bucket: str, prefix: str, files: RenderedFiles
) -> list[str]:
    written = []
    for key, body in sorted(files.objects.items()):
        full = f"{prefix}/{key}"
        retry.call(
            f"s3:PutObject {full}",
            partial(
                s3.put_object, Bucket=bucket, Key=full, Body=body, ContentType=_content_type(full)
            ),
        )
        written.append(full)
    return written


def clear_handshake_markers(s3: Any, retry: Retrier, bucket: str, prefix: str) -> int:
    """Delete ``<prefix>/ip/*`` so rollouts never read a dead trainer's address (handshake state,
    not data)."""
    marker_prefix = f"{prefix}/ip/"
    keys: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": marker_prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = retry.call("s3:ListObjectsV2 ip/", partial(s3.list_objects_v2, **kwargs))
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            break
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": k} for k in keys[start : start + 1000]]
        retry.call(
            "s3:DeleteObjects ip/",
            partial(s3.delete_objects, Bucket=bucket, Delete={"Objects": chunk, "Quiet": True}),
        )
    return len(keys)


def write_json(
    s3: Any,
    retry: Retrier,
    bucket: str,
    key: str,
    document: Mapping[str, Any],
    *,
    only_if: str | None = None,
) -> str | None:
    """Write ``document``; returns the new object's ETag. ``only_if`` makes it a conditional
    write: ``"absent"`` (the key must not exist yet) or an ETag the current object must still
    have; a lost race raises ClientError ``PreconditionFailed`` (a ``ConditionalRequestConflict``
    is retried: retry.TRANSIENT_CODES)."""
    body = json.dumps(document, indent=1, sort_keys=True).encode("utf-8")
    condition = (
        {}
        if only_if is None
        else ({"IfNoneMatch": "*"} if only_if == "absent" else {"IfMatch": only_if})
    )
    response = retry.call(
        f"s3:PutObject {key}",
        lambda: s3.put_object(
            Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition
        ),
    )
    etag = response.get("ETag") if isinstance(response, Mapping) else None
    return str(etag) if etag else None


def read_json(s3: Any, retry: Retrier, bucket: str, key: str) -> dict[str, Any] | None:
    """The JSON document at ``key``, or None when it does not exist."""
    return read_json_versioned(s3, retry, bucket, key)[0]


def read_json_versioned(
    s3: Any, retry: Retrier, bucket: str, key: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON document at ``key`` and its ETag, or (None, None) when it does not exist."""
    try:
        response = retry.call(f"s3:GetObject {key}", lambda: s3.get_object(Bucket=bucket, Key=key))
    except ClientError as error:
        if error_code(error) in ("NoSuchKey", "404", "NotFound"):
            return None, None
        if error_code(error) == "AccessDenied" and not _exists(s3, retry, bucket, key):
            # S3 answers 403 instead of 404 for a missing key unless the caller may list the
            # whole bucket; the role may list this experiment's prefix only.
            return None, None
        raise
    document = json.loads(response["Body"].read())
    return (document if isinstance(document, dict) else None), response.get("ETag")


def _exists(s3: Any, retry: Retrier, bucket: str, key: str) -> bool:
    listing = retry.call(
        f"s3:ListObjectsV2 {key}",
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1),
    )
    return any(item.get("Key") == key for item in listing.get("Contents", []))
