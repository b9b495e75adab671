"""Sweeps: one experiment file, many experiments.

``sweep:`` maps dotted field paths to lists of values (``hyperparameters.lr: [0.0003, 0.0001]``,
``track: [...]``, ``reward_function: [a.py, b.py]``); the product of the lists (or, with
``sweep_mode: zip``, their pairing) gives the variants. Each variant is the file with those values
set, validated like any experiment file (a bad value names the variant and the field), and
becomes its own experiment stack named ``<name>-<6 hex>``: the hex is a hash of the variant's
values, so a variant keeps its name (and its stack and data) when others are added or reordered.
A dotted path into ``hyperparameters`` or ``model_metadata`` works whether they are inline or a
file: the file is read and the value set in an inline copy.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollouts.problems import Problem
from rollouts.spec_models import NAME

NAME_PATTERN = re.compile(NAME)

SWEEP_KEYS = ("sweep", "sweep_mode")
MODES = ("product", "zip")
# Each variant is a stack with its own Batch compute environment and job queue, and AWS Batch
# allows 50 of each per account and region (AWS Batch service quotas).
MAX_VARIANTS = 50
SUFFIX_LENGTH = 6
NAME_MAX = 40
FILE_SECTIONS = ("hyperparameters", "model_metadata")


@dataclass(frozen=True)
class Variant:
    document: Any
    file: str  # how problems name it: the file and the variant
    base: str | None = None  # the sweep's base name; None for a file without sweep:
    values: Mapping[str, Any] = field(default_factory=dict)


def variant_name(base: str, values: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    return f"{base}-{digest[:SUFFIX_LENGTH]}"


def shown_values(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{path}={json.dumps(value)}" for path, value in values.items())


def expand(document: Any, *, file: str, base: Path) -> tuple[list[Variant], list[Problem]]:
    """The variants of a file's document (the document itself when it has no ``sweep:``)."""
    if not isinstance(document, Mapping) or "sweep" not in document:
        if isinstance(document, Mapping) and "sweep_mode" in document:
            return [], [
                Problem(file, "sweep_mode", document["sweep_mode"], "is not allowed without sweep:")
            ]
        return [Variant(document, file)], []
    problems: list[Problem] = []
    sweep = document["sweep"]
    mode = document.get("sweep_mode", "product")
    if mode not in MODES:
        problems.append(
            Problem(file, "sweep_mode", mode, f"is not allowed: one of {', '.join(MODES)}")
        )
    if not isinstance(sweep, Mapping) or not sweep:
        problems.append(
            Problem(
                file, "sweep", sweep, "is not allowed: a mapping of dotted field paths to lists"
            )
        )
        return [], problems
    for path, values in sweep.items():
        if not isinstance(path, str) or not path or path.split(".")[0] in ("name", *SWEEP_KEYS):
            problems.append(
                Problem(file, f"sweep.{path}", path, "is not allowed: a field path other than name")
            )
        elif not isinstance(values, list) or not values:
            problems.append(
                Problem(file, f"sweep.{path}", values, "is not allowed: a non-empty list of values")
            )
        elif len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            problems.append(Problem(file, f"sweep.{path}", values, "is not allowed: a value twice"))
    name = document.get("name")
    if (
        not isinstance(name, str)
        or not NAME_PATTERN.match(name)
        or (len(name) + 1 + SUFFIX_LENGTH > NAME_MAX)
    ):
        problems.append(
            Problem(
                file,
                "name",
                name,
                f"is not allowed for a sweep: its variants are named <name>-<{SUFFIX_LENGTH} hex>, "
                f"so the name may have at most {NAME_MAX - 1 - SUFFIX_LENGTH} characters",
            )
        )
    if problems:
        return [], problems
    assert isinstance(name, str)  # checked above
    paths = list(sweep)
    lists = [sweep[p] for p in paths]
    if mode == "zip":
        lengths = {len(values) for values in lists}
        if len(lengths) != 1:
            return [], [
                Problem(
                    file,
                    "sweep",
                    {p: len(v) for p, v in zip(paths, lists, strict=True)},
                    "is not allowed with sweep_mode zip: every list must have the same length",
                )
            ]
        combos = list(zip(*lists, strict=True))
    else:
        combos = list(itertools.product(*lists))
    if len(combos) > MAX_VARIANTS:
        return [], [
            Problem(
                file,
                "sweep",
                f"{len(combos)} variants",
                f"is too many: at most {MAX_VARIANTS}, because each variant is a stack with its "
                "own Batch compute environment and job queue and AWS Batch allows 50 of each per "
                "account and region",
            )
        ]
    base_doc = {k: v for k, v in document.items() if k not in SWEEP_KEYS}
    variants = []
    for combo in combos:
        values = dict(zip(paths, combo, strict=True))
        vname = variant_name(name, values)
        shown = f"{file} (sweep variant {vname}: {shown_values(values)})"
        doc = copy.deepcopy(base_doc)
        for path, value in values.items():
            problem = _set(doc, path, value, base, shown)
            if problem:
                problems.append(problem)
        doc["name"] = vname
        variants.append(Variant(doc, shown, base=name, values=values))
    return variants, problems


def _set(doc: dict[str, Any], path: str, value: Any, base: Path, shown: str) -> Problem | None:
    parts = path.split(".")
    head = parts[0]
    if len(parts) > 1 and head in FILE_SECTIONS and isinstance(doc.get(head), str):
        # A file of hyperparameters or metadata: set the value in an inline copy of it.
        source = Path(doc[head]) if Path(doc[head]).is_absolute() else base / doc[head]
        try:
            doc[head] = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return Problem(shown, head, doc[head], f"cannot be read to set {path}: {error}")
    target = doc
    for i, part in enumerate(parts[:-1]):
        node = target.get(part)
        if node is None:
            node = target[part] = {}
        if not isinstance(node, dict):
            return Problem(
                shown, ".".join(parts[: i + 1]), node, f"is not a mapping, so {path} cannot be set"
            )
        target = node
    target[parts[-1]] = value
    return None
