"""checkov (pinned, its own virtualenv from `make checkov`) on every synthesized template, both
backends, every egress and platform variant: no failed check, and every skip carries its reason
in the resource's Metadata (constructs_lib/checkov.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from synth_support import REPO, VARIANTS, Synthesis

pytestmark = pytest.mark.checkov

CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
# The checks this project skips, each with the reason recorded beside its resources.
SKIPPED = {"CKV_AWS_18", "CKV_AWS_111", "CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173"}


@pytest.fixture(scope="module")
def every_synthesis(
    request: pytest.FixtureRequest, variant: Callable[[str], Synthesis]
) -> list[Synthesis]:
    return [
        request.getfixturevalue("batch"),
        request.getfixturevalue("robomaker"),
        *(variant(name) for name in VARIANTS),
    ]


def _reports(text: str) -> list[dict[str, Any]]:
    """checkov prints one JSON document per directory, one after the other."""
    decoder, reports, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        reports.extend(document if isinstance(document, list) else [document])
        while at < len(text) and text[at].isspace():
            at += 1
    return reports


def test_checkov_passes_on_every_template(every_synthesis: list[Synthesis]) -> None:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make checkov`"
    directories = [arg for s in every_synthesis for arg in ("-d", str(s.outdir))]
    result = subprocess.run(
        [
            str(CHECKOV),
            *directories,
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],  # --quiet: only what failed
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    reports = _reports(result.stdout)
    assert len(reports) == len(every_synthesis), result.stderr[-2000:]
    for report in reports:
        summary = report["summary"]
        failed = report.get("results", {}).get("failed_checks", [])
        assert summary["failed"] == 0 and failed == [], [
            (c["check_id"], c["file_path"], c["resource"]) for c in failed
        ]
        assert summary["passed"] > 100 and summary["parsing_errors"] == 0


def test_every_checkov_skip_names_a_known_check_and_its_reason(
    every_synthesis: list[Synthesis],
) -> None:
    skips = 0
    for synthesis in every_synthesis:
        for stack, template in synthesis.templates.items():
            for logical_id, resource in template["Resources"].items():
                for entry in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                    skips += 1
                    assert entry["id"] in SKIPPED, (stack, logical_id, entry)
                    assert len(entry["comment"]) >= 40, (stack, logical_id, entry)
    assert skips > 0
