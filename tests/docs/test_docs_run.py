"""Docs that run: every command example in README.md and docs/*.md is executed, and what it
prints is compared with what the docs show.

Rules of a ```console block: ``$ command`` lines (a trailing ``\\`` continues one) are followed by
the output the docs promise; a line that is only ``...`` stands for any number of lines, and
``…`` inside a line for any text (the only placeholders allowed). ``$ echo $?`` shows the
previous command's exit code. A ```bash block lists commands without output: each must exit 0.

Commands run in a scratch folder holding a copy of ``experiments/`` and the input files the
examples name (``bad.yaml``, deepracer-for-cloud env files, downloaded metrics), built from the
shared fixtures; ``/tmp/`` in a command means that folder's ``tmp/``. Commands that need an AWS
account (``cdk``, ``status``, ``stop``, ``metrics`` of a deployed experiment or ``s3://``) are
listed in ``NEEDS_AWS`` and not run; ``make`` targets other than ``synth`` are dry-run
(``make -n``), since running the suite or the benchmarks from inside the suite is not possible.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("ROLLOUTS_FIXTURES", REPO.parent / "shared" / "fixtures"))
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
ANY_LINES = "..."
ANY_TEXT = "…"
OFFLINE = (
    "validate",
    "plan",
    "render",
    "metrics",
    "import-drfc",
    "export-model",
    "compare",
    "schema",
)
BAD_YAML = (
    "name: broken\ntrack: reInvent2019_trak\nrace: {type: DRAG_RACE}\n"
    "model_metadata: experiments/models/discrete-5-actions.json\n"
    "reward_function: experiments/rewards/follow_center_line.py\n"
)
pytestmark = pytest.mark.toolchain


@dataclass
class Example:
    doc: str
    line: int
    command: str
    expected: list[str] | None  # None: a bash block (no output shown)
    exit_code: int | None = None  # from a following `echo $?`
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _examples() -> list[Example]:
    found: list[Example] = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            lang, body = match.group(1), match.group(2)
            first = text[: match.start()].count("\n") + 2
            lines = body.splitlines()
            if lang == "console":
                found += _console(path.name, first, lines)
            elif lang == "bash":
                found += _bash(path.name, first, lines)
    return found


def _console(doc: str, first: int, lines: list[str]) -> list[Example]:
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        start = i
        command = lines[i][2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        if command.strip() == "echo $?":
            examples[-1].exit_code = int(output[0])
            continue
        examples.append(Example(doc, first + start, command, output))
    return examples


def _bash(doc: str, first: int, lines: list[str]) -> list[Example]:
    examples = []
    for offset, line in enumerate(lines):
        command = _strip_comment(line).strip()
        if command:
            examples.append(Example(doc, first + offset, command, None))
    return examples


def _strip_comment(line: str) -> str:
    # A "#" after whitespace starts a comment (none of our commands quotes one).
    return re.split(r"\s#\s", " " + line, maxsplit=1)[0][1:]


def needs_aws(command: str) -> str | None:
    """Why a command cannot run here, or None when it can."""
    words = shlex.split(command.replace("$PWD", "."))
    if words[0] == "cdk":
        return "deploys to an AWS account"
    if words[0] == "source":
        return "changes the interactive shell only"
    if words[0] == "rollouts" and words[1] in ("status", "stop", "evaluate"):
        return "reads a deployed stack"
    if (
        words[0] == "rollouts"
        and words[1] == "compare"
        and any(
            re.fullmatch(r"[a-z][a-z0-9-]{0,39}", w) for w in words[2:] if not w.startswith("-")
        )
    ):
        return "reads deployed experiments' data"
    if (
        words[0] == "rollouts"
        and words[1] == "export-model"
        and re.fullmatch(r"[a-z][a-z0-9-]{0,39}", words[2])
    ):
        return "reads a deployed experiment's data"
    if words[0] == "rollouts" and words[1] == "metrics":
        source = words[2]
        if source.startswith("s3://") or re.fullmatch(r"[a-z][a-z0-9-]{0,39}", source):
            return "reads a deployed experiment's data"
    return None


EXAMPLES = _examples()


def test_every_command_example_is_accounted_for() -> None:
    """Each example is run here, or named as needing AWS: none is silently skipped."""
    kinds = set()
    for example in EXAMPLES:
        words = shlex.split(example.command.replace("$PWD", "."))
        if needs_aws(example.command):
            continue
        if words[0] == "make":
            kinds.add("make")
        else:
            assert words[0] == "rollouts" and words[1] in OFFLINE, example.id
            kinds.add(words[1])
    assert kinds == {*OFFLINE, "make"}, "the docs show every offline command"


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """The folder a user runs an example in, with the files the examples name (a fresh one for
    each example: one example's output must not feed another)."""
    root = tmp_path
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "bad.yaml").write_text(BAD_YAML)
    drfc = FIXTURES / "drfc"
    shutil.copy(drfc / "template-run.env", root / "run.env")
    shutil.copy(drfc / "template-system.env", root / "system.env")
    for worker in (2, 3):
        shutil.copy(drfc / "template-worker.env", root / f"worker-{worker}.env")
    for name in ("model_metadata.json", "hyperparameters.json"):
        shutil.copy(drfc / name, root / name)
    (root / "custom_files").mkdir()
    shutil.copy(
        REPO / "experiments" / "rewards" / "follow_center_line.py",
        root / "custom_files" / "reward_function.py",
    )
    metrics = FIXTURES / "metrics" / "console-training-metrics.json"
    shutil.copy(metrics, root / "console-training-metrics.json")
    evaluation = FIXTURES / "metrics" / "console-evaluation-metrics.json"
    shutil.copy(evaluation, root / "console-evaluation-metrics.json")
    for folder in ("download/metrics", "metrics"):
        (root / folder).mkdir(parents=True)
        shutil.copy(metrics, root / folder / "TrainingMetrics.json")
    # Two local copies of run prefixes, differing in their learning rate.
    for name, lr in (("run-a", 0.0003), ("run-b", 0.0001)):
        (root / name / "metrics").mkdir(parents=True)
        shutil.copy(metrics, root / name / "metrics" / "TrainingMetrics.json")
        (root / name / "hyperparameters.json").write_text(
            f'{{"num_episodes_between_training": 20, "lr": {lr}}}'
        )
    # A local copy of a run's prefix, as the trainer leaves its model/ folder.
    model = root / "run-copy" / "model"
    model.mkdir(parents=True)
    shutil.copy(drfc / "model_metadata.json", model / "model_metadata.json")
    (model / "model_12.pb").write_bytes(b"frozen graph 12")
    (model / "12_Step-2400.ckpt.index").write_bytes(b"index")
    (root / "tmp").mkdir()
    return root


def matches(expected: list[str], actual: list[str]) -> bool:
    """``...`` lines match any number of lines, ``…`` any text within a line."""
    if not expected:
        return not actual
    head = expected[0].rstrip()
    if head.strip() == ANY_LINES:
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.split(ANY_TEXT))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and matches(
        expected[1:], actual[1:]
    )


def _make_dry_run(target: str) -> subprocess.CompletedProcess[str]:
    """`make -n TARGET`: the target exists and its recipe expands (nothing is run)."""
    return subprocess.run(
        ["make", "-n", target], cwd=REPO, capture_output=True, text=True, check=False
    )


def _trimmed(text: str) -> list[str]:
    """Lines without the blank ones around them (a terminal shows those as nothing)."""
    return text.strip("\n").splitlines()


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = command.replace(" /tmp/", f" {cwd}/tmp/")
    env = {
        **os.environ,
        "PATH": f"{REPO / 'node_modules' / '.bin'}:{REPO / '.venv' / 'bin'}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",  # keep stdout and stderr in the order a terminal shows them
        "COLUMNS": "100",
    }
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=300,
    )


RUNNABLE = [e for e in EXAMPLES if not needs_aws(e.command)]


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.id for e in RUNNABLE])
def test_example_prints_what_the_docs_show(example: Example, scratch: Path) -> None:
    words = shlex.split(example.command)
    if words[0] == "make":
        target = words[1]
        if target == "synth":
            return  # run for real by test_make_synth_prints_the_readme_summary
        assert _make_dry_run(target).returncode == 0, f"{example.id}: no target {target!r}"
        return
    result = run(example.command, scratch)
    wanted = 0 if example.exit_code is None else example.exit_code
    assert result.returncode == wanted, f"{example.id}: {example.command}\n{result.stdout}"
    if example.expected:
        assert matches(_trimmed("\n".join(example.expected)), _trimmed(result.stdout)), (
            f"{example.id}: `{example.command}` printed\n" + result.stdout
        )


def test_make_synth_prints_the_readme_summary(tmp_path: Path) -> None:
    """README "Two commands": the summary `make synth` ends with."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"`make synth` ends with a summary such as:\n\n```\n(.*?)```", readme, re.S)
    assert block, "README shows the summary of make synth"
    result = subprocess.run(
        ["make", "-s", "synth", f"SYNTH_OUT={tmp_path / 'cdk.out'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    # "ends with": with CI=true the CDK CLI prints its own lines to stdout before ours.
    assert matches([ANY_LINES, *block.group(1).splitlines()], _trimmed(result.stdout)), (
        result.stdout
    )


def test_every_make_target_the_docs_name_exists() -> None:
    """`make <target>` in prose too (`make bench`, `make mutation`, ...): each is a real target."""
    targets = sorted(
        {
            name
            for path in DOCS
            for name in re.findall(r"`make ([a-z][a-z-]*)", path.read_text(encoding="utf-8"))
        }
    )
    assert {"synth", "test", "bench", "mutation"} <= set(targets), targets
    for target in targets:
        result = _make_dry_run(target)
        assert result.returncode == 0, f"make {target}: {result.stderr}"
