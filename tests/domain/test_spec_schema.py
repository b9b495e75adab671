"""The spec is declared once (rollouts/spec_models.py): the reader takes its rules from the
models, the JSON Schema is generated from them, and the shipped schema file is that schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from rollouts import spec_models
from rollouts.cli.schema import SHIPPED, schema_text
from rollouts.spec import SpecError, load_experiment, load_variants

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
MODEL = REPO / "experiments" / "models" / "discrete-5-actions.json"
SCHEMA = json.loads((REPO / SHIPPED).read_text())
# Each section of a file and the model that declares it.
SECTIONS = {
    "": spec_models.ExperimentFile,
    "race": spec_models.Race,
    "race.object_avoidance": spec_models.ObjectAvoidance,
    "race.head_to_bot": spec_models.HeadToBot,
    "car": spec_models.Car,
    "training": spec_models.Training,
    "rollouts": spec_models.Rollouts,
    "rollouts.overrides[0]": spec_models.WorkerOverride,
    "trainer": spec_models.Trainer,
    "pretrained": spec_models.Pretrained,
    "evaluation": spec_models.Evaluation,
    "hyperparameters": spec_models.Hyperparameters,
    "model_metadata": spec_models.ModelMetadata,
}


def write(tmp_path: Path, body: str) -> Path:
    (tmp_path / "reward.py").write_text("def reward_function(params):\n    return 1.0\n")
    path = tmp_path / "experiment.yaml"
    path.write_text(
        "name: schema\ntrack: reInvent2019_track\nreward_function: reward.py\n"
        f"model_metadata: {MODEL}\n{body}"
    )
    return path


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert (REPO / SHIPPED).read_text() == schema_text(), (
        f"regenerate it: rollouts schema --out {SHIPPED}"
    )
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_shipped_file_points_editors_at_the_schema_and_passes_it(path: Path) -> None:
    text = path.read_text()
    assert (
        text.splitlines()[0] == "# yaml-language-server: $schema=../schema/experiment.schema.json"
    )
    jsonschema.Draft202012Validator(SCHEMA).validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("rollouts: {count: 65}\n", "maximum"),
        ("rollouts: {count: 2, bogus: 1}\n", "additionalProperties"),
        ("race: {type: DRAG_RACE}\n", "enum"),
        ("trainer: {instance_type: c5.large}\n", "pattern"),
        ("hyperparameters: {lr: 0.5}\n", "maximum"),
    ],
)
def test_schema_and_reader_refuse_the_same_values(tmp_path: Path, body: str, keyword: str) -> None:
    document = yaml.safe_load(write(tmp_path, body).read_text())
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(document))

    def validators(found: list) -> set[str]:  # optional sections nest theirs under anyOf
        return {str(e.validator) for e in found} | {
            v for e in found for v in validators(list(e.context or []))
        }

    assert errors and keyword in validators(errors), errors
    with pytest.raises(SpecError):
        load_experiment(write(tmp_path, body))


@pytest.mark.parametrize("section", sorted(SECTIONS), ids=lambda s: s or "top")
def test_the_reader_accepts_exactly_the_declared_keys(tmp_path: Path, section: str) -> None:
    """An unknown key's error lists the keys the reader knows: they are the model's fields."""
    bodies = {
        "": "bogus: 1\n",
        "race": "race: {type: TIME_TRIAL, bogus: 1}\n",
        "race.object_avoidance": "race: {type: OBJECT_AVOIDANCE, object_avoidance: {bogus: 1}}\n",
        "race.head_to_bot": "race: {type: HEAD_TO_BOT, head_to_bot: {bogus: 1}}\n",
        "car": "car: {bogus: 1}\n",
        "training": "training: {bogus: 1}\n",
        "rollouts": "rollouts: {bogus: 1}\n",
        "rollouts.overrides[0]": "rollouts: {count: 2, overrides: [{worker: 1, bogus: 1}]}\n",
        "trainer": "trainer: {bogus: 1}\n",
        "pretrained": "pretrained: {run: latest, bogus: 1}\n",
        "evaluation": "evaluation: {bogus: 1}\n",
        "hyperparameters": "hyperparameters: {bogus: 1}\n",
        "model_metadata": "",
    }
    if section == "model_metadata":
        metadata = json.loads(MODEL.read_text()) | {"bogus": 1}
        (tmp_path / "metadata.json").write_text(json.dumps(metadata))
        path = write(tmp_path, "")
        path.write_text(path.read_text().replace(str(MODEL), "metadata.json"))
    else:
        path = write(tmp_path, bodies[section])
    with pytest.raises(SpecError) as caught:
        load_variants(path)
    [message] = [p.message for p in caught.value.problems if p.field.endswith("bogus")]
    listed = re.search(r"allowed keys are (.*?)(?:; did you mean.*)?$", message)
    assert listed, message
    assert sorted(listed.group(1).split(", ")) == sorted(SECTIONS[section].model_fields)


def test_defaults_come_from_the_models(tmp_path: Path) -> None:
    spec = load_experiment(write(tmp_path, ""))
    assert spec.rollouts.count == spec_models.Rollouts.model_fields["count"].default
    assert (
        spec.trainer.max_run_minutes == spec_models.Trainer.model_fields["max_run_minutes"].default
    )
    assert (
        spec.training.min_eval_trials
        == spec_models.Training.model_fields["min_eval_trials"].default
    )
    assert spec.car.color == spec_models.Car.model_fields["color"].default
