"""Evaluate each run of an experiment once its training job has trained: an EventBridge rule on
the SageMaker training job's state change and a small Lambda (``lambda/evaluation/handler.py``).
No polling: nothing runs between a run's end and the next one."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.checkov import LAMBDA_REASONS, skip
from constructs_lib.nag import acknowledge
from constructs_lib.python_function import python_function
from constructs_lib.retention import encrypted_log_group
from rollouts.spec import Evaluation

EXPERIMENT_TAG = "rollouts:experiment"


class AutoEvaluation(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        experiment: str,
        experiment_prefix: str,
        evaluation: Evaluation,
        bucket_name: str,
        key_arn: str,
        job_queue_arn: str,
        job_definition_arn: str,
        vcpus: int,
        memory_mib: int,
        tags: Mapping[str, str],
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        settings = {
            "tracks": list(evaluation.tracks),
            "both_directions": evaluation.both_directions,
            "trials": evaluation.trials,
            "checkpoint": evaluation.checkpoint,
            "is_continuous": evaluation.continuous,
            "number_of_resets": evaluation.resets,
            "off_track_penalty": evaluation.off_track_penalty,
            "collision_penalty": evaluation.collision_penalty,
        }
        config = {
            "experiment": experiment,
            "bucket": bucket_name,
            "experimentPrefix": experiment_prefix,
            "jobQueue": job_queue_arn,
            "jobDefinition": job_definition_arn,
            "vcpus": vcpus,
            "memoryMib": memory_mib,
            "tags": dict(sorted(tags.items())),
            "settings": settings,
        }
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Starts the evaluation of each trained run of {experiment}",
        )
        log_group = encrypted_log_group(self, "Logs", retention=log_retention, key=log_key)
        self.function = python_function(
            self,
            "Function",
            handler="evaluation.handler.on_training_state",
            role=self.role,
            # lambda/evaluation/start.py FUNCTION_TIMEOUT_SECONDS: its staleness window follows it.
            timeout=Duration.seconds(120),
            log_group=log_group,
            environment={"EVALUATION_CONFIG": stack.to_json_string(config)},
            description=f"DeepRacer Rollouts: evaluate trained runs of {experiment}",
        )
        log_group.grant_write(self.role)
        skip(
            self.function,
            {
                **LAMBDA_REASONS,
                "CKV_AWS_116": "Invoked asynchronously by EventBridge, which retries delivery, "
                "and by Lambda's own two retries; an evaluation that still did not start is in "
                "the function's log and can be started with `rollouts evaluate`.",
            },
        )
        self.rule = events.Rule(
            self,
            "TrainedRun",
            description=f"A training job of {experiment} ended: evaluate it if it trained",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={
                    # Run ids are <experiment>-<8 hex>; the handler checks the exact form.
                    "TrainingJobName": [{"prefix": f"{experiment}-"}],
                    "TrainingJobStatus": ["Completed", "Stopped"],
                },
            ),
            targets=[targets.LambdaFunction(self.function, retry_attempts=4)],
        )
        bucket = f"arn:{stack.partition}:s3:::{bucket_name}"
        runs = f"{experiment_prefix}/runs"
        statements = [
            iam.PolicyStatement(
                sid="ReadTrainedRuns",
                actions=["s3:GetObject"],
                resources=[f"{bucket}/{runs}/*"],
            ),
            iam.PolicyStatement(
                sid="ListRunModels",
                actions=["s3:ListBucket"],
                resources=[bucket],
                conditions={"StringLike": {"s3:prefix": [f"{runs}/*"]}},
            ),
            iam.PolicyStatement(
                sid="WriteEvaluations",
                actions=["s3:PutObject"],
                resources=[f"{bucket}/{runs}/*/evaluations/*"],
            ),
            iam.PolicyStatement(
                sid="UseDataKeyThroughS3",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"s3.{stack.region}.amazonaws.com"}},
            ),
            iam.PolicyStatement(
                sid="FindEvaluationJobs",
                # Before a takeover resubmits: the dead invocation's job, by name. ListJobs has
                # no resource types.
                actions=["batch:ListJobs"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="SubmitEvaluation",
                actions=["batch:SubmitJob"],
                resources=[job_queue_arn, job_definition_arn],
            ),
            iam.PolicyStatement(
                sid="TagEvaluation",
                actions=["batch:TagResource"],
                resources=[stack.format_arn(service="batch", resource="job", resource_name="*")],
                conditions={"StringEquals": {f"aws:RequestTag/{EXPERIMENT_TAG}": experiment}},
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)
        acknowledge(
            self.role,
            {
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<PlatformBucketName>/{runs}/*]": "Read-only: "
                "the trained run's model/ folder and training params (run ids are random).",
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<PlatformBucketName>/{runs}/*/evaluations/*]": "Writes only "
                "under a run's own evaluations/ folder: the checkpoint copy, params and record.",
                "AwsSolutions-IAM5[Resource::*]": "batch:ListJobs only (it has no resource "
                "types): a takeover looks up the dead invocation's job by name before it submits.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:<AWS::AccountId>:job/*]": "Batch job ids "
                f"are random; tagging is limited to new jobs tagged {EXPERIMENT_TAG}={experiment}.",
            },
        )
