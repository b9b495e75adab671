"""Paths and helpers shared by the CLI tests (a uniquely named module: every test folder has a
conftest.py, so tests import from here, never from ``conftest``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# CI clones main with shared/ beside it: <parent>/main and <parent>/shared.
FIXTURES = Path(os.environ.get("ROLLOUTS_FIXTURES", REPO.parent / "shared" / "fixtures"))
EXPERIMENTS = REPO / "experiments"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)
