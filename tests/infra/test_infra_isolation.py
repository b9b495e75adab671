"""One experiment's code cannot touch another's: the synthesized policies of every experiment,
both backends, checked for what an experiment's roles may write (README, "Security defaults")."""

from __future__ import annotations

import json
from typing import Any

from synth_support import Synthesis
from test_infra_policies import as_list, statements

S3_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
PLATFORM = "DeepRacerRollouts-Platform"


def _experiments(synthesis: Synthesis) -> dict[str, dict[str, Any]]:
    """Experiment name -> template (the name is the stack's ExperimentName output)."""
    found = {}
    for stack, template in synthesis.templates.items():
        if stack != PLATFORM:
            found[template["Outputs"]["ExperimentName"]["Value"]] = template
    return found


def _writes(statement: dict[str, Any]) -> bool:
    return statement.get("Effect") == "Allow" and any(
        a in S3_WRITES for a in as_list(statement["Action"])
    )


def _resources(statement: dict[str, Any]) -> list[str]:
    return [json.dumps(r) for r in as_list(statement["Resource"])]


def test_no_role_writes_another_experiments_data_or_the_fanout_records(
    each_backend: Synthesis,
) -> None:
    experiments = _experiments(each_backend)
    assert len(experiments) >= 3
    checked = 0
    for name, template in experiments.items():
        for policy, statement in statements(template):
            if not _writes(statement):
                continue
            for resource in _resources(statement):
                checked += 1
                assert f"/experiments/{name}/" in resource, (name, policy, resource)
                if policy.startswith("Jobs"):  # the trainer and the rollouts
                    assert f"/experiments/{name}/runs/*" in resource, (name, policy, resource)
                    assert "run.json" not in resource and "/fanout/" not in resource
    assert checked > 0


def test_job_roles_are_denied_every_experiments_fanout_records(each_backend: Synthesis) -> None:
    for name, template in _experiments(each_backend).items():
        roles = {
            k
            for k, r in template["Resources"].items()
            if r["Type"] == "AWS::IAM::Role" and k.startswith("Jobs")
        }
        assert len(roles) == 2, name
        denied: dict[str, set[str]] = {}
        for policy, statement in statements(template):
            if statement.get("Effect") != "Deny" or not policy.startswith("Jobs"):
                continue
            for role in roles:
                if policy.startswith(role.removesuffix(role[-8:])):
                    denied.setdefault(role, set()).update(_resources(statement))
            assert set(as_list(statement["Action"])) == {"s3:PutObject", "s3:DeleteObject"}
        assert set(denied) == roles, name
        for resources in denied.values():
            assert any("/experiments/*/run.json" in r for r in resources)
            assert any("/experiments/*/fanout/*" in r for r in resources)


def test_rollouts_stream_only_to_their_own_experiments_video(batch: Synthesis) -> None:
    template = _experiments(batch)["reinvent-time-trial"]
    streams = {
        k for k, r in template["Resources"].items() if r["Type"] == "AWS::KinesisVideo::Stream"
    }
    assert len(streams) == 4
    [statement] = [
        s for policy, s in statements(template) if "kinesisvideo:PutMedia" in as_list(s["Action"])
    ]
    assert {r["Fn::GetAtt"][0] for r in as_list(statement["Resource"])} == streams
    for stack, other in batch.templates.items():
        if stack.endswith("reinvent-time-trial"):
            continue
        for _policy, s in statements(other):
            assert "kinesisvideo:PutMedia" not in as_list(s["Action"]), stack


# The one role that writes across experiments: the platform's run supervisor, and only its own
# records and the finish mark of a run.
SUPERVISOR_WRITES = {"/experiments/*/supervisor/*", "/experiments/*/runs/*/model/.finished"}


def test_no_write_statement_is_bucket_or_experiments_wide(each_backend: Synthesis) -> None:
    supervisor_writes: set[str] = set()
    for stack, template in each_backend.templates.items():
        for policy, statement in statements(template):
            if not _writes(statement):
                continue
            if policy.startswith("SupervisorRole") and any(
                "s3:" in a for a in as_list(statement["Action"])
            ):
                for resource in _resources(statement):
                    supervisor_writes |= {w for w in SUPERVISOR_WRITES if w in resource}
                    assert any(resource.endswith(f'{w}"]]}}') for w in SUPERVISOR_WRITES), resource
                continue
            for resource in _resources(statement):
                assert not resource.rstrip('"]}').endswith("/*") or "/experiments/" in resource, (
                    stack,
                    policy,
                    resource,
                )
                assert "/experiments/*" not in resource, (stack, policy, resource)
    assert supervisor_writes == SUPERVISOR_WRITES


def test_no_fanout_may_retag_another_experiments_job(each_backend: Synthesis) -> None:
    """Stopping trusts the experiment tag: re-tagging a job or batch of another experiment (then
    stopping it) is denied, tagging on submit is not, and starting needs this experiment's tag."""
    service = "batch" if each_backend.backend == "batch" else "robomaker"
    for name, template in _experiments(each_backend).items():
        denies = [
            s
            for policy, s in statements(template)
            if policy.startswith("RunRole")
            and s.get("Effect") == "Deny"
            and f"{service}:TagResource" in as_list(s["Action"])
        ]
        assert len(denies) == 1, name
        [deny] = denies
        assert deny["Condition"] == {
            "Null": {"aws:ResourceTag/rollouts:experiment": "false"},
            "StringNotEquals": {"aws:ResourceTag/rollouts:experiment": name},
        }
        [tag] = [
            s
            for policy, s in statements(template)
            if policy.startswith("RunRole")
            and s.get("Effect") == "Allow"
            and f"{service}:TagResource" in as_list(s["Action"])
        ]
        assert tag["Condition"] == {"StringEquals": {"aws:RequestTag/rollouts:experiment": name}}
