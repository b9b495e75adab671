"""What matters in the platform stack: who may reach whom, and how the data is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest
from synth_support import Synthesis


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def only(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = resources(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    return next(iter(found.items()))


def security_group_id(template: dict[str, Any], description_start: str) -> str:
    for logical_id, sg in resources(template, "AWS::EC2::SecurityGroup").items():
        if sg["Properties"]["GroupDescription"].startswith(description_start):
            return logical_id
    raise AssertionError(f"no security group described {description_start!r}")


def all_ingress(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every inbound rule: inline on security groups and standalone ingress resources."""
    rules: list[tuple[str, dict[str, Any]]] = []
    for logical_id, sg in resources(template, "AWS::EC2::SecurityGroup").items():
        rules += [(logical_id, rule) for rule in sg["Properties"].get("SecurityGroupIngress", [])]
    for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values():
        rules.append((rule["Properties"]["GroupId"]["Fn::GetAtt"][0], rule["Properties"]))
    return rules


def test_each_trainer_accepts_redis_only_from_its_own_rollouts(each_backend: Synthesis) -> None:
    """Every experiment owns both groups: its trainer admits 6379 from its rollout group only,
    and that group is what its rollouts run with (Batch compute environment / RoboMaker job)."""
    experiments = [name for name in each_backend.templates if name != "DeepRacerRollouts-Platform"]
    assert len(experiments) >= 3
    for name in experiments:
        template = each_backend.templates[name]
        trainer = security_group_id(template, "DeepRacer trainer")
        rollout = security_group_id(template, "DeepRacer rollouts")
        into_trainer = [rule for target, rule in all_ingress(template) if target == trainer]
        assert into_trainer == [
            {
                "IpProtocol": "tcp",
                "FromPort": 6379,
                "ToPort": 6379,
                "Description": "Redis experience stream from the rollouts",
                "GroupId": {"Fn::GetAtt": [trainer, "GroupId"]},
                "SourceSecurityGroupId": {"Fn::GetAtt": [rollout, "GroupId"]},
            }
        ], name
        assert not [rule for target, rule in all_ingress(template) if target == rollout], name
        [run] = resources(template, "Custom::RolloutsRun").values()
        trainer_groups = run["Properties"]["Trainer"]["SecurityGroups"]
        assert trainer_groups == [{"Fn::GetAtt": [trainer, "GroupId"]}], name
        own_and_shared = [
            {"Fn::GetAtt": [rollout, "GroupId"]},
            {"Ref": "PlatformRolloutEgressSecurityGroup"},
        ]
        if each_backend.backend == "batch":
            _, environment = only(template, "AWS::Batch::ComputeEnvironment")
            groups = environment["Properties"]["ComputeResources"]["SecurityGroupIds"]
        else:
            groups = run["Properties"]["RoboMaker"]["SecurityGroups"]
        assert groups == own_and_shared, name


def test_the_shared_rollout_group_opens_nothing(each_backend: Synthesis) -> None:
    """The platform's group that every experiment's rollouts carry: HTTPS out, no inbound, and
    no trainer anywhere admits it."""
    platform = each_backend.platform
    shared = security_group_id(platform, "DeepRacer rollouts of every experiment")
    assert not [rule for target, rule in all_ingress(platform) if target == shared]
    [egress] = resources(platform, "AWS::EC2::SecurityGroup")[shared]["Properties"][
        "SecurityGroupEgress"
    ]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)
    for name, template in each_backend.templates.items():
        for _target, rule in all_ingress(template):
            assert rule.get("FromPort") != 6379 or "Ref" not in rule["SourceSecurityGroupId"], (
                name,
                rule,
            )


@pytest.mark.parametrize("egress", ["public", "nat", "endpoints"])
def test_no_ingress_from_the_internet(egress: str, each_backend: Synthesis, variant: Any) -> None:
    synthesis = each_backend if egress == "public" else variant(f"{each_backend.backend}-{egress}")
    assert synthesis.backend == each_backend.backend, "the case synthesizes what its id says"
    template = synthesis.platform
    assert bool(resources(template, "AWS::EC2::NatGateway")) == (egress == "nat")
    for _target, rule in all_ingress(template):
        assert rule.get("CidrIp") not in ("0.0.0.0/0",), rule
        assert rule.get("CidrIpv6") not in ("::/0",), rule
        assert "SourceSecurityGroupId" in rule, f"inbound rule without a group source: {rule}"


def test_default_platform_has_no_idle_cost_network(batch: Synthesis) -> None:
    template = batch.platform
    assert not resources(template, "AWS::EC2::NatGateway")
    assert not resources(template, "AWS::EC2::VPCEndpoint").keys() - {
        k
        for k, v in resources(template, "AWS::EC2::VPCEndpoint").items()
        if v["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    _, endpoint = only(template, "AWS::EC2::VPCEndpoint")
    assert "s3" in str(endpoint["Properties"]["ServiceName"])
    # Two AZs by default, each with a trainer (isolated) and a public (rollout) subnet.
    assert len(resources(template, "AWS::EC2::Subnet")) == 4


@pytest.mark.parametrize("backend", ["batch", "robomaker"])
def test_nat_and_endpoint_egress_modes(backend: str, variant: Any) -> None:
    nat = variant(f"{backend}-nat").platform
    assert len(resources(nat, "AWS::EC2::NatGateway")) == 1
    assert len(resources(nat, "AWS::EC2::Subnet")) == 9  # trainer, public, rollouts x 3 AZs
    endpoints = variant(f"{backend}-endpoints").platform
    assert not resources(endpoints, "AWS::EC2::NatGateway")
    assert not resources(endpoints, "AWS::EC2::InternetGateway")
    interface = [
        v
        for v in resources(endpoints, "AWS::EC2::VPCEndpoint").values()
        if v["Properties"].get("VpcEndpointType") == "Interface"
    ]
    # ECR api + dkr, CloudWatch Logs, Kinesis Video: what Fargate tasks use; no ECS agent ones.
    services = sorted(v["Properties"]["ServiceName"]["Fn::Join"][1][-1] for v in interface)
    assert services == [".ecr.api", ".ecr.dkr", ".kinesisvideo", ".logs"]


def test_data_bucket_is_encrypted_versioned_tls_only_and_retained(each_backend: Synthesis) -> None:
    template = each_backend.platform
    buckets = resources(template, "AWS::S3::Bucket")
    data_id, data = next((k, v) for k, v in buckets.items() if k.startswith("DataBucket"))
    props = data["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    assert template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    assert template["Resources"][key_id]["DeletionPolicy"] == "Retain"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith(
        "DataAccessLogs"
    )
    for bucket in buckets.values():
        assert bucket["DeletionPolicy"] == "Retain"
        assert bucket["UpdateReplacePolicy"] == "Retain"
    # No auto-delete custom resource: a stack delete never empties a bucket.
    assert not [
        r for r in template["Resources"].values() if r["Type"] == "Custom::S3AutoDeleteObjects"
    ]
    policies = [
        p
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": data_id}
    ]
    statements = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": [
            {"Fn::GetAtt": [data_id, "Arn"]},
            {"Fn::Join": ["", [{"Fn::GetAtt": [data_id, "Arn"]}, "/*"]]},
        ],
    } in statements


def test_batch_rollouts_are_fargate_tasks_of_their_own_experiment(batch: Synthesis) -> None:
    """No instances anywhere (nothing to reach through instance metadata, nothing idle): the
    platform has no compute environment; each experiment has a Fargate Spot one sized to its
    rollouts, a queue on it and a Fargate job definition with its own job role."""
    platform_types = {r["Type"] for r in batch.platform["Resources"].values()}
    assert not platform_types & {
        "AWS::Batch::ComputeEnvironment",
        "AWS::Batch::JobQueue",
        "AWS::Batch::JobDefinition",
        "AWS::EC2::LaunchTemplate",
        "AWS::IAM::InstanceProfile",
    }
    for name, count in (("reinvent-time-trial", 4), ("oa-multi-track", 3)):
        experiment = batch.experiment(name)
        environment_id, environment = only(experiment, "AWS::Batch::ComputeEnvironment")
        compute = environment["Properties"]["ComputeResources"]
        assert compute["Type"] == "FARGATE_SPOT"
        assert compute["MaxvCpus"] == 4 * count  # exactly its N rollouts of 4 vCPUs
        assert compute["Subnets"] == {"Ref": "PlatformRolloutSubnets"}
        assert "InstanceRole" not in compute and "LaunchTemplate" not in compute
        _, queue = only(experiment, "AWS::Batch::JobQueue")
        [order] = queue["Properties"]["ComputeEnvironmentOrder"]
        assert order["ComputeEnvironment"] == {
            "Fn::GetAtt": [environment_id, "ComputeEnvironmentArn"]
        }
        _, job_definition = only(experiment, "AWS::Batch::JobDefinition")
        props = job_definition["Properties"]
        assert props["PlatformCapabilities"] == ["FARGATE"]
        container = props["ContainerProperties"]
        assert container["Command"] == ["/opt/rollouts/rollout-entrypoint.sh"]
        # An init process passes CancelJob/TerminateJob's SIGTERM on to the entrypoint.
        assert container["LinuxParameters"]["InitProcessEnabled"] is True
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container["NetworkConfiguration"] == {"AssignPublicIp": "ENABLED"}
        assert container["EphemeralStorage"] == {"SizeInGiB": 60}
        assert container["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
        assert props["Timeout"]["AttemptDurationSeconds"] >= 60
        assert {r["Type"] for r in container["ResourceRequirements"]} == {"VCPU", "MEMORY"}
        role = container["JobRoleArn"]["Fn::GetAtt"]
        assert role[0].startswith("JobsRolloutRole") and role[1] == "Arn"
        assert experiment["Resources"][role[0]]["Type"] == "AWS::IAM::Role"


def test_reclaimed_rollouts_are_retried_and_failing_ones_are_not(batch: Synthesis) -> None:
    _, job_definition = only(batch.experiment("reinvent-time-trial"), "AWS::Batch::JobDefinition")
    strategy = job_definition["Properties"]["RetryStrategy"]
    assert strategy["Attempts"] == 5
    # First match wins: reclaims retry, anything else (the worker's own failure) exits.
    assert strategy["EvaluateOnExit"] == [
        {"Action": "RETRY", "OnStatusReason": "Your Spot Task was interrupted*"},
        {"Action": "RETRY", "OnStatusReason": "Host EC2*"},
        {"Action": "EXIT", "OnReason": "*"},
    ]


def test_on_demand_and_private_subnet_settings(variant: Any) -> None:
    on_demand = variant("batch-on-demand").experiment("reinvent-time-trial")
    _, environment = only(on_demand, "AWS::Batch::ComputeEnvironment")
    assert environment["Properties"]["ComputeResources"]["Type"] == "FARGATE"
    # Behind a NAT gateway rollouts need no public address.
    nat = variant("batch-nat").experiment("reinvent-time-trial")
    _, job_definition = only(nat, "AWS::Batch::JobDefinition")
    network = job_definition["Properties"]["ContainerProperties"]["NetworkConfiguration"]
    assert network == {"AssignPublicIp": "DISABLED"}


def test_gpu_image_for_robomaker(variant: Any) -> None:
    synthesis = variant("robomaker-gpu")
    # The image asset is staged with the GPU base image.
    manifest = json.loads((synthesis.outdir / "DeepRacerRollouts-Platform.assets.json").read_text())
    [image] = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {
        "SIMAPP_IMAGE": "awsdeepracercommunity/deepracer-simapp:6.0.5-gpu"
    }


def test_image_build_context_holds_what_the_dockerfile_copies(batch: Synthesis) -> None:
    """The staged context (what `cdk deploy` builds) keeps the entrypoint, the taskset wrapper
    and the image check, executable; the asset's excludes drop none of them."""
    manifest = json.loads(
        next(batch.outdir.glob("DeepRacerRollouts-Platform.assets.json")).read_text()
    )
    [image] = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {
        "SIMAPP_IMAGE": "awsdeepracercommunity/deepracer-simapp:6.0.5-cpu"
    }
    context = batch.outdir / image["source"]["directory"]
    for name in ("Dockerfile", "rollout-entrypoint.sh", "taskset", "check-image.sh"):
        assert (context / name).is_file(), name
    for name in ("rollout-entrypoint.sh", "taskset", "check-image.sh"):
        assert (context / name).stat().st_mode & 0o111, f"{name} is not executable"


def test_robomaker_application_has_the_workshop_settings(robomaker: Synthesis) -> None:
    template = robomaker.platform
    _, application = only(template, "AWS::RoboMaker::SimulationApplication")
    props = application["Properties"]
    assert props["RobotSoftwareSuite"] == {"Name": "ROS", "Version": "Kinetic"}
    assert props["SimulationSoftwareSuite"] == {"Name": "Gazebo", "Version": "7"}
    assert props["RenderingEngine"] == {"Name": "OGRE", "Version": "1.x"}
    [source] = props["Sources"]
    assert source["Architecture"] == "X86_64"
    assert source["S3Key"] == "robomaker/simulation_ws.tar.gz"
    assert source["S3Bucket"]["Ref"].startswith("DataBucket")
    assert not resources(template, "AWS::Batch::ComputeEnvironment")
    assert any("retired on 2025-09-10" in message for message in robomaker.warnings)


def test_robomaker_container_form(variant: Any) -> None:
    template = variant("robomaker-container").platform
    _, application = only(template, "AWS::RoboMaker::SimulationApplication")
    props = application["Properties"]
    assert props["RobotSoftwareSuite"] == {"Name": "General"}
    assert props["SimulationSoftwareSuite"] == {"Name": "SimulationRuntime"}
    assert "Sources" not in props
    assert "dkr.ecr" in str(props["Environment"])


def test_platform_publishes_every_value_experiments_read(each_backend: Synthesis) -> None:
    from constructs_lib.platform_parameters import PLATFORM_KEYS

    names = sorted(
        p["Properties"]["Name"]
        for p in resources(each_backend.platform, "AWS::SSM::Parameter").values()
    )
    assert names == sorted(f"/deepracer-rollouts/default/{key}" for key in PLATFORM_KEYS)
    # Experiments read them as deploy-time parameters: no exports, no cross-stack imports.
    assert "Export" not in str(each_backend.platform.get("Outputs", {}))
    for name, template in each_backend.templates.items():
        if name != "DeepRacerRollouts-Platform":
            assert "Fn::ImportValue" not in str(template)
            read = {
                p["Default"] for k, p in template["Parameters"].items() if k.startswith("Platform")
            }
            assert read and read <= set(names)


def test_idle_cost_estimate(batch: Synthesis, variant: Any) -> None:
    from rollouts.idle_cost import idle_monthly_cost, total

    default = idle_monthly_cost(batch.platform)
    assert [line.item for line in default] == [
        "KMS customer-managed key",
        "simapp image in ECR (~6 GB)",
        "scheduled Lambda every 1 min (~43,800 calls)",
    ]
    # The supervisor's sweep: 43,800 calls of 1 s at 256 MB (ARM), requests and 300 B of logs.
    sweep = 43_800 * (0.25 * 0.0000133334 + 0.20 / 1e6 + 300 / 1e9 * 0.50)
    assert default[2].monthly_usd == pytest.approx(sweep)
    assert total(default) == pytest.approx(1.60 + sweep)
    assert total(default) < 2.0  # the platform's idle budget
    nat = variant("batch-nat")  # one NAT gateway whatever the AZ count
    assert total(idle_monthly_cost(nat.platform)) == pytest.approx(1.60 + sweep + 0.045 * 730)
    endpoints = variant("batch-endpoints")
    # 4 interface endpoints in 2 AZs.
    assert total(idle_monthly_cost(endpoints.platform)) == pytest.approx(
        1.60 + sweep + 8 * 0.01 * 730
    )


def test_every_log_group_is_encrypted_with_the_platform_key(each_backend: Synthesis) -> None:
    key_ids = {
        k for k, r in each_backend.platform["Resources"].items() if r["Type"] == "AWS::KMS::Key"
    }
    [key_id] = key_ids
    groups = 0
    for stack, template in each_backend.templates.items():
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::Logs::LogGroup":
                continue
            groups += 1
            kms_key = resource["Properties"].get("KmsKeyId")
            expected = (
                {"Fn::GetAtt": [key_id, "Arn"]}
                if stack == "DeepRacerRollouts-Platform"
                else {"Ref": "PlatformKeyArn"}
            )
            assert kms_key == expected, (stack, logical_id, kms_key)
    assert groups >= 1 + 4 * (len(each_backend.templates) - 1)


def test_the_key_admits_cloudwatch_logs_only_for_this_accounts_log_groups(batch: Synthesis) -> None:
    [key] = [r for r in batch.platform["Resources"].values() if r["Type"] == "AWS::KMS::Key"]
    [logs_statement] = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Sid") == "CloudWatchLogsOfThisAccount"
    ]
    principal = json.dumps(logs_statement["Principal"])
    assert "logs." in principal and ".amazonaws.com" in principal
    context = logs_statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert ":logs:" in json.dumps(context) and json.dumps(context).endswith(':log-group:*"]]}')
    assert "kms:CreateGrant" not in logs_statement["Action"]
