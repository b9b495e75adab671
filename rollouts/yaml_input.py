"""Experiment files read as users write them: YAML 1.2, with limits no file can get past.

ruamel.yaml reads YAML 1.2, where ``3e-4`` is a float and ``yes``/``on``/``off`` are strings, as
JSON Schema (and so the shipped ``schema/experiment.schema.json``) sees them; PyYAML resolves
YAML 1.1. Before anything is built, the file's events are streamed once, without recursion, to
refuse what would hang or exhaust a command:

- files larger than ``MAX_BYTES``;
- nesting deeper than ``MAX_DEPTH`` (a 1000-level file would otherwise end in a RecursionError);
- more than ``MAX_ALIASES`` aliases, or aliases that would expand to more than ``MAX_NODES``
  nodes (the "billion laughs": 1 KB of anchors that stands for a billion strings).

Duplicate keys are refused (YAML keeps the last one without a word).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

MAX_BYTES = 1024 * 1024  # experiment files are a few KB; reward functions are separate files
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_NODES = 100_000


class YamlInputError(ValueError):
    """Why a text is refused (its message says it, with the line and column when known)."""


def _where(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml() -> YAML:
    # The pure-Python reader: the same behaviour wherever the CLI runs (no C extension).
    reader = YAML(typ="safe", pure=True)
    reader.version = (1, 2)
    reader.allow_duplicate_keys = False
    return reader


def check_limits(text: str) -> None:
    """Stream the events of ``text`` once; raise YamlInputError at the first limit passed."""
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise YamlInputError(
            f"is {size:,} bytes; an experiment file may have at most {MAX_BYTES:,}"
        )
    # Per open collection: the number of nodes it holds so far, expanded; anchors remember
    # the expanded size of what they name.
    open_counts: list[int] = []
    anchors: dict[str, int] = {}
    open_anchors: list[str | None] = []
    aliases = 0
    try:
        for event in _yaml().parse(text):
            if isinstance(event, CollectionStartEvent):
                if len(open_counts) >= MAX_DEPTH:
                    raise YamlInputError(
                        f"nests deeper than {MAX_DEPTH} levels{_where(event.start_mark)}"
                    )
                open_counts.append(1)
                open_anchors.append(event.anchor)
            elif isinstance(event, CollectionEndEvent):
                count = open_counts.pop()
                anchor = open_anchors.pop()
                if anchor:
                    anchors[anchor] = count
                if open_counts:
                    open_counts[-1] += count
            elif isinstance(event, ScalarEvent | AliasEvent):
                count = 1
                if isinstance(event, AliasEvent):
                    aliases += 1
                    if aliases > MAX_ALIASES:
                        raise YamlInputError(
                            f"has more than {MAX_ALIASES} aliases (*name){_where(event.start_mark)}"
                        )
                    count = anchors.get(str(event.anchor), 1)
                elif event.anchor:
                    anchors[event.anchor] = 1
                if open_counts:
                    open_counts[-1] += count
                    if open_counts[-1] > MAX_NODES:
                        raise YamlInputError(
                            f"expands to more than {MAX_NODES:,} values (anchors and aliases "
                            f"repeat what they name){_where(event.start_mark)}"
                        )
    except MarkedYAMLError as error:
        raise YamlInputError(_invalid(error)) from None
    except YAMLError as error:
        raise YamlInputError(f"is not valid YAML: {error}") from None


def _invalid(error: MarkedYAMLError) -> str:
    problem = error.problem or "invalid YAML"
    return f"is not valid YAML{_where(error.problem_mark)}: {problem}"


def load(text: str) -> Any:
    """The document of ``text`` (YAML 1.2, plain Python values); YamlInputError when it is refused."""
    check_limits(text)
    try:
        return _yaml().load(text)
    except DuplicateKeyError as error:
        key = str(error.problem or "").split('"')[1] if '"' in str(error.problem) else ""
        shown = f" {key!r}" if key else ""
        raise YamlInputError(
            f"is not valid YAML{_where(error.problem_mark)}: duplicate key{shown}"
        ) from None
    except MarkedYAMLError as error:
        raise YamlInputError(_invalid(error)) from None
    except YAMLError as error:
        raise YamlInputError(f"is not valid YAML: {error}") from None
