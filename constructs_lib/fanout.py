"""The experiment's run: a custom resource whose Lambda starts the trainer and N rollouts on
create and stops them on delete (runtime in ``lambda/fanout``, contract in
``docs/fanout-contract.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct

from constructs_lib.checkov import skip, skip_lambda_findings
from constructs_lib.nag import acknowledge, token_name
from constructs_lib.platform_parameters import PlatformReference
from constructs_lib.retention import encrypted_log_group
from rollouts.run_properties import (
    ExperimentResources,
    RolloutSettings,
    TrainerSettings,
    run_properties,
)

LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"
LAMBDA_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache", "**/.mypy_cache"]
# CloudFormation waits at most an hour for a custom resource: on_event (2 min) plus the waiter
# (45 min) stay well inside it. on_event only validates and plans; is_complete starts and polls.
TOTAL_TIMEOUT = Duration.minutes(45)
QUERY_INTERVAL = Duration.seconds(30)


class ExperimentRun(Construct):
    """``Custom::RolloutsRun``: one run of one experiment (its physical id is the run id)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        experiment: str,
        backend: str,
        prefix: str,
        platform: PlatformReference,
        jobs: ExperimentResources,
        files: s3_assets.Asset,
        trainer: TrainerSettings,
        rollouts: RolloutSettings,
        wait_for: str,
        tags: Mapping[str, str],
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
        robomaker_app_form: str = "bundle",
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Fan-out of experiment {experiment}",
        )
        code = lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=LAMBDA_EXCLUDES)
        handlers: dict[str, lambda_.Function] = {}
        for name, handler, timeout in (
            ("OnEvent", "on_event", 2),
            ("IsComplete", "is_complete", 5),
        ):
            log_group = encrypted_log_group(
                self, f"{name}Logs", retention=log_retention, key=log_key
            )
            handlers[name] = lambda_.Function(
                self,
                name,
                runtime=lambda_.Runtime.PYTHON_3_14,
                architecture=lambda_.Architecture.ARM_64,
                code=code,
                handler=f"fanout.handler.{handler}",
                role=self.role,
                timeout=Duration.minutes(timeout),
                memory_size=512,
                log_group=log_group,
                description=f"DeepRacer Rollouts fan-out ({handler}) for {experiment}",
            )
            log_group.grant_write(self.role)
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=handlers["OnEvent"],
            is_complete_handler=handlers["IsComplete"],
            query_interval=QUERY_INTERVAL,
            total_timeout=TOTAL_TIMEOUT,
            disable_waiter_state_machine_logging=False,
            log_group=encrypted_log_group(
                self, "ProviderLogs", retention=log_retention, key=log_key
            ),
            waiter_state_machine_log_options=cr.LogOptions(
                destination=encrypted_log_group(
                    self, "WaiterLogs", retention=log_retention, key=log_key
                ),
                include_execution_data=False,
                level=sfn.LogLevel.ALL,
            ),
        )
        skip_lambda_findings(self)  # the two handlers and the Provider framework's functions
        waiter_policy = provider.node.find_child("waiter-state-machine").node.find_child("Role")
        skip(
            waiter_policy.node.find_child("DefaultPolicy"),
            {
                "CKV_AWS_111": "The Provider framework's waiter logs through Step Functions log "
                "delivery: logs:CreateLogDelivery and its companions have no resource-level "
                "permissions (they must be granted on *)."
            },
        )
        properties = run_properties(
            experiment=experiment,
            backend=backend,
            platform=platform,
            jobs=jobs,
            files_bucket=files.s3_bucket_name,
            files_key=files.s3_object_key,
            trainer=trainer,
            rollouts=rollouts,
            wait_for=wait_for,
            tags=tags,
            robomaker_app_form=robomaker_app_form,
        )
        self.resource = CustomResource(
            self,
            "Run",
            service_token=provider.service_token,
            resource_type="Custom::RolloutsRun",
            properties=properties,
            # Stopping jobs is what delete means here; data in S3 stays (the bucket is RETAIN).
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.run_id = self.resource.ref
        self._grant(
            stack=stack,
            experiment=experiment,
            backend=backend,
            prefix=prefix,
            platform=platform,
            jobs=jobs,
            files=files,
            pretrained_reads=trainer.pretrained_reads(),
            pretrained_lists=trainer.pretrained_lists(),
        )
        self._acknowledge(
            provider,
            experiment=experiment,
            backend=backend,
            prefix=prefix,
            pretrained_reads=trainer.pretrained_reads(),
        )

    def attribute(self, name: str) -> str:
        return self.resource.get_att_string(name)

    def _grant(
        self,
        *,
        stack: Stack,
        experiment: str,
        backend: str,
        prefix: str,
        platform: PlatformReference,
        jobs: ExperimentResources,
        files: s3_assets.Asset,
        pretrained_reads: list[str],
        pretrained_lists: list[str],
    ) -> None:
        """Exactly what the fan-out calls, on this experiment's resources only."""
        role = self.role
        # Only the one asset object this stack synthesized, not the whole assets bucket.
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadExperimentBundle",
                actions=["s3:GetObject"],
                resources=[
                    stack.format_arn(
                        service="s3",
                        region="",
                        account="",
                        resource=files.s3_bucket_name,
                        resource_name=files.s3_object_key,
                    )
                ],
            )
        )
        bucket_arn = stack.format_arn(
            service="s3", region="", account="", resource=platform.bucket_name
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteExperimentFiles",
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[f"{bucket_arn}/{prefix}/*"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ClearStaleHandshake",
                actions=["s3:DeleteObject"],
                resources=[f"{bucket_arn}/{prefix}/runs/*/ip/*"],
            )
        )
        outside = [key for key in pretrained_reads if not key.startswith(f"{prefix}/")]
        if outside:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="FindPretrainedModel",
                    actions=["s3:GetObject"],
                    resources=[f"{bucket_arn}/{key}" for key in outside],
                )
            )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ListExperimentPrefix",
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                conditions={
                    "StringLike": {
                        "s3:prefix": [
                            f"{prefix}/*",
                            *[key for key in pretrained_lists if not key.startswith(f"{prefix}/")],
                        ]
                    }
                },
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[platform.key_arn],
                # Only for the experiment's objects, through S3.
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="RunTrainer",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                ],
                resources=[
                    stack.format_arn(
                        service="sagemaker",
                        resource="training-job",
                        # Run ids are <experiment>-<8 hex>: "????????" keeps experiment
                        # "reinvent" away from the jobs of "reinvent-time-trial".
                        resource_name=f"{experiment}-????????",
                    )
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PassTrainerRole",
                actions=["iam:PassRole"],
                resources=[jobs.trainer_role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            )
        )
        if backend == "batch":
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="SubmitRollouts",
                    actions=["batch:SubmitJob"],
                    resources=[jobs.job_queue_arn, jobs.job_definition_arn],
                )
            )
            job_arn = stack.format_arn(service="batch", resource="job", resource_name="*")
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="TagRollouts",
                    actions=["batch:TagResource"],
                    resources=[job_arn],
                    conditions={"StringEquals": {"aws:RequestTag/rollouts:experiment": experiment}},
                )
            )
            role.add_to_policy(
                _deny_retagging("NeverRetagOtherExperimentsJobs", "batch", [job_arn], experiment)
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="StopRollouts",
                    actions=["batch:CancelJob", "batch:TerminateJob"],
                    resources=[job_arn],
                    conditions={
                        "StringEquals": {"aws:ResourceTag/rollouts:experiment": experiment}
                    },
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="FindRollouts",
                    actions=["batch:ListJobs", "batch:DescribeJobs"],
                    resources=["*"],
                )
            )
        else:
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="PassRolloutRole",
                    actions=["iam:PassRole"],
                    resources=[jobs.rollout_role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "robomaker.amazonaws.com"}},
                )
            )
            simulation_arns = [
                stack.format_arn(service="robomaker", resource=kind, resource_name="*")
                for kind in ("simulation-job", "simulation-job-batch")
            ]
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="RunRollouts",
                    actions=[
                        "robomaker:StartSimulationJobBatch",
                        "robomaker:CreateSimulationJob",
                        "robomaker:TagResource",
                    ],
                    resources=[*simulation_arns, platform.simulation_application_arn],
                    # The batch and each of its job requests carry the run's tags
                    # (robomaker_backend.py), this experiment's among them.
                    conditions={"StringEquals": {"aws:RequestTag/rollouts:experiment": experiment}},
                )
            )
            role.add_to_policy(
                _deny_retagging(
                    "NeverRetagOtherExperimentsRollouts", "robomaker", simulation_arns, experiment
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="WatchAndStopRollouts",
                    actions=[
                        "robomaker:DescribeSimulationJobBatch",
                        "robomaker:CancelSimulationJobBatch",
                    ],
                    resources=simulation_arns,
                    conditions={
                        "StringEquals": {"aws:ResourceTag/rollouts:experiment": experiment}
                    },
                )
            )
            role.add_to_policy(
                iam.PolicyStatement(
                    sid="FindRollouts",
                    actions=["robomaker:ListSimulationJobBatches"],
                    resources=["*"],
                )
            )

    def _acknowledge(
        self,
        provider: cr.Provider,
        *,
        experiment: str,
        backend: str,
        prefix: str,
        pretrained_reads: list[str],
    ) -> None:
        bucket = "arn:<AWS::Partition>:s3:::<PlatformBucketName>"
        account = "<AWS::Region>:<AWS::AccountId>"
        reasons = {
            f"AwsSolutions-IAM5[Resource::{bucket}/{prefix}/*]": "The fan-out writes this experiment's params, reward function, model metadata "
            "and run.json under its own prefix only.",
            f"AwsSolutions-IAM5[Resource::{bucket}/{prefix}/runs/*/ip/*]": "Handshake markers (ip/ip.json, ip/done) under a run's own prefix are cleared "
            "before its trainer starts; nothing else can be deleted.",
            "AwsSolutions-IAM5[Resource::*]": "List/Describe calls of Batch and RoboMaker have no resource-level permissions; "
            "they are read-only and used to find this experiment's jobs by name.",
        }
        for key in pretrained_reads:
            if "*" in key and not key.startswith(f"{prefix}/"):
                reasons[f"AwsSolutions-IAM5[Resource::{bucket}/{key}]"] = (
                    "Read-only: the pretrained model the experiment file names (its runs' model/ "
                    "folders), checked before anything starts and its chosen checkpoint copied "
                    "into the new run's own prefix; no job role reads it."
                )
        if backend == "batch":
            reasons[f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:{account}:job/*]"] = (
                "Batch job ids are random; Cancel/Terminate/Tag are limited by the "
                f"rollouts:experiment={experiment} tag condition."
            )
        else:
            for kind in ("simulation-job", "simulation-job-batch"):
                reasons[
                    f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:robomaker:{account}:"
                    f"{kind}/*]"
                ] = (
                    "RoboMaker generates simulation job (batch) ids at start; there is no name "
                    "to scope to before the call."
                )
        acknowledge(self.role, reasons)

        framework: dict[str, str] = {
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaBasicExecutionRole]": "The CDK Provider framework's own functions only write their logs.",
            "AwsSolutions-SF2": "The Provider framework's waiter state machine offers no X-Ray option; it only "
            "polls is_complete, whose logs are kept.",
            "AwsSolutions-IAM5[Resource::*]": "Step Functions log delivery (logs:CreateLogDelivery, DescribeResourcePolicies "
            "...) has no resource-level permissions; granted by CDK for the waiter's logs.",
        }
        handler_arns = [
            token_name(fn, "Arn")
            for fn in (provider.on_event_handler, provider.is_complete_handler)
            if fn is not None
        ]
        framework_arns = [
            token_name(child, "Arn")
            for child in provider.node.children
            if isinstance(child, lambda_.Function)
            and child.node.id in ("framework-isComplete", "framework-onTimeout")
        ]
        for arn in handler_arns + framework_arns:
            framework[f"AwsSolutions-IAM5[Resource::{arn}:*]"] = (
                "lambda:InvokeFunction on a function's versions and aliases (ARN:*), as the "
                "Provider framework grants it; limited to the framework's own functions."
            )
        acknowledge(provider, framework)


def _deny_retagging(
    sid: str, service: str, resources: list[str], experiment: str
) -> iam.PolicyStatement:
    """Stopping trusts the experiment tag, so the role must never re-tag (or untag) a job that
    already belongs to another experiment and then stop it. Something being started has no tags
    yet, so tagging on create is unaffected ("Null": "false" = the tag is already there; a
    negated operator alone would also match when it is absent)."""
    return iam.PolicyStatement(
        sid=sid,
        effect=iam.Effect.DENY,
        actions=[f"{service}:TagResource", f"{service}:UntagResource"],
        resources=resources,
        conditions={
            "Null": {"aws:ResourceTag/rollouts:experiment": "false"},
            "StringNotEquals": {"aws:ResourceTag/rollouts:experiment": experiment},
        },
    )
