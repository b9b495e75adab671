"""The fan-out's own records of its runs, under ``<Prefix>/fanout/`` (only the fan-out writes
there; docs/fanout-contract.md, "Records").

- ``<run id>.json``, the run record: created once, before the run starts anything, with
  ``If-None-Match: *``; later changes are conditional on the ETag read (``If-Match``), so two
  invocations can never overwrite each other's submit claim. It holds the run's ``ancestors``
  (the runs it replaced, newest first), the rollout start attempt (``submitAttemptAt`` /
  ``rolloutsAttemptAt``), the ids it led to (``batchJobId`` / ``simulationJobBatchArns``) and the
  last reason a poll had to wait (``waiting``).
- ``<run id>.stop``, the stop mark: a Delete, the update that replaces the run, or the run's own
  failure writes it (``If-None-Match: *``, first reason wins) before it reports. From then on no
  invocation starts anything for that run; one that started something checks the mark after the
  call and stops it.
- ``<run id>.stopped``: nothing of the run runs or can still turn up (written after a complete
  stop), so later sweeps skip the run without reading its record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from botocore.exceptions import ClientError

from . import files
from .naming import is_run_id
from .retry import Retrier, error_code

LOG = logging.getLogger(__name__)

FOLDER = "fanout"
RECORD, STOP, STOPPED = ".json", ".stop", ".stopped"
# Ancestors kept in a record: a Delete spares the runs that replaced the one it deletes (the
# cleanup after an update), which is always a short chain.
MAX_ANCESTORS = 20
# Only 412: the object exists or changed. A 409 ConditionalRequestConflict (a concurrent
# conditional write in flight) is retried as transient (retry.TRANSIENT_CODES).
LOST_RACE = ("PreconditionFailed",)


def key(prefix: str, rid: str, suffix: str = RECORD) -> str:
    return f"{prefix}/{FOLDER}/{rid}{suffix}"


def lost_race(error: BaseException) -> bool:
    """A conditional write that lost to another writer (the object exists or changed)."""
    return isinstance(error, ClientError) and error_code(error) in LOST_RACE


@dataclass
class Record:
    """A run record as read, with the ETag its next write must match (None: absent)."""

    document: dict[str, Any]
    etag: str | None

    @property
    def exists(self) -> bool:
        return self.etag is not None


@dataclass(frozen=True)
class Store:
    """The records of one experiment: its bucket and prefix, with the clients to reach them."""

    s3: Any
    retry: Retrier
    bucket: str
    prefix: str

    def read(self, rid: str) -> Record:
        document, etag = files.read_json_versioned(
            self.s3, self.retry, self.bucket, key(self.prefix, rid)
        )
        if document is not None and document.get("runId") != rid:
            LOG.warning("record of %s names run %r: ignored", rid, document.get("runId"))
            document = None
        return Record(document=dict(document or {}), etag=etag)

    def update(self, record: Record, changes: Mapping[str, Any]) -> Record:
        """Write ``record`` with ``changes`` (a None value removes the key), conditional on the
        ETag it was read with; raises ClientError ``PreconditionFailed`` when someone wrote in
        between."""
        document = {k: v for k, v in {**record.document, **changes}.items() if v is not None}
        etag = files.write_json(
            self.s3,
            self.retry,
            self.bucket,
            key(self.prefix, str(document["runId"])),
            document,
            only_if=record.etag or "absent",
        )
        return Record(document=document, etag=etag)

    def create(self, rid: str, ancestors: Callable[[], list[str]]) -> Record:
        """The run's record, created if absent (an earlier invocation of the run may have);
        ``ancestors`` is asked only then (it reads the previous run's record)."""
        found = self.read(rid)
        if found.exists:
            return found
        document = {"runId": rid, "ancestors": ancestors()[:MAX_ANCESTORS]}
        try:
            return self.update(Record(document={}, etag=None), document)
        except ClientError as error:
            if not lost_race(error):
                raise
            return self.read(rid)  # a concurrent invocation created it

    def ancestors_of(self, previous: str) -> list[str]:
        """``previous`` and the runs it replaced (best effort: a missing record ends the chain)."""
        try:
            older = self.read(previous).document.get("ancestors") or []
        except Exception:
            LOG.warning("could not read the record of %s", previous, exc_info=True)
            older = []
        return [previous, *[str(a) for a in older if is_run_id(a) and a != previous]]

    def stop_mark(self, rid: str) -> dict[str, Any] | None:
        """The run's stop mark, None when there is none."""
        return files.read_json(self.s3, self.retry, self.bucket, key(self.prefix, rid, STOP))

    def mark_stopped(self, rid: str, reason: str, at: float) -> dict[str, Any]:
        """Leave the durable stop mark of ``rid`` (the first reason stays); returns the mark."""
        mark = {"runId": rid, "reason": reason, "at": int(at)}
        try:
            files.write_json(
                self.s3,
                self.retry,
                self.bucket,
                key(self.prefix, rid, STOP),
                mark,
                only_if="absent",
            )
        except ClientError as error:
            if not lost_race(error):
                raise
            return self.stop_mark(rid) or mark
        return mark

    def mark_settled(self, rid: str, at: float) -> None:
        """Nothing of ``rid`` runs or can still turn up (best effort: a later sweep redoes it)."""
        try:
            files.write_json(
                self.s3,
                self.retry,
                self.bucket,
                key(self.prefix, rid, STOPPED),
                {"runId": rid, "at": int(at)},
            )
        except Exception:
            LOG.warning("could not record that %s is stopped", rid, exc_info=True)

    def list_runs(self, experiment: str) -> list[RunState]:
        """Every run of ``experiment`` that has a record or a mark, sorted by run id. Keys that
        are not ``<run id of this experiment><suffix>`` are ignored."""
        folder = f"{self.prefix}/{FOLDER}/"
        runs: dict[str, RunState] = {}
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder}
        while True:
            page = self.retry.call(
                f"s3:ListObjectsV2 {folder}", partial(self.s3.list_objects_v2, **kwargs)
            )
            for item in page.get("Contents", []):
                name = str(item.get("Key", ""))[len(folder) :]
                for suffix in (RECORD, STOP, STOPPED):
                    rid = name[: -len(suffix)]
                    if (
                        name.endswith(suffix)
                        and is_run_id(rid)
                        and rid.startswith(f"{experiment}-")
                    ):
                        runs.setdefault(rid, RunState(rid)).suffixes.add(suffix)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                break
            kwargs["ContinuationToken"] = token
        return [runs[rid] for rid in sorted(runs)]


@dataclass
class RunState:
    """What the listing of ``fanout/`` says about one run."""

    rid: str
    suffixes: set[str] = field(default_factory=set)

    @property
    def marked(self) -> bool:
        return STOP in self.suffixes

    @property
    def settled(self) -> bool:
        return STOPPED in self.suffixes
