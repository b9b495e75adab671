"""What is wrong with an experiment file: one ``Problem`` per finding, all of a file in one
``SpecError``. Its own module, so that the spec, sweeps and the cost check can all report
problems without importing one another in a circle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()  # a key the file does not have


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file."""

    file: str
    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {show(self.value)} {self.message}"


class SpecError(ValueError):
    """An experiment file is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


SHOWN = 80


def show(value: Any) -> str:
    """At most SHOWN characters of ``value``; only as much of it is rendered as is shown, so a
    huge value (a long list, a deep tree) costs no more than a small one."""
    if value is MISSING:
        return "(missing)"
    if isinstance(value, str):
        text = repr(value[: SHOWN + 1])
    else:
        text = ""
        for chunk in json.JSONEncoder(default=str).iterencode(value):
            text += chunk
            if len(text) > SHOWN:
                break
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
