"""The run supervisor (``lambda/supervisor/``): a Lambda that owns every run of the platform from
its start to its last job, fed by EventBridge (Batch and SageMaker job state changes, experiment
stacks' status changes) and a sweep every minute, and the KMS-encrypted SNS topic it reports to.

It lives in the platform stack so that it outlives every experiment stack, one being deleted
included. It may stop only jobs the project tagged, read stack status, write run records under
``experiments/*/supervisor/`` and the finish mark of a run, and publish to its topic.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from constructs_lib.checkov import LAMBDA_REASONS, skip
from constructs_lib.nag import acknowledge, token_name
from constructs_lib.python_function import python_function
from constructs_lib.retention import encrypted_log_group
from rollouts.naming import STACK_PREFIX

EXPERIMENT_TAG = "rollouts:experiment"
PLATFORM_TAG = "rollouts:platform"
# The sweep is the backstop for lost events; with the 60 s grace a finished trainer's rollouts
# get (lambda/supervisor/decide.py, FINISH_GRACE_SECONDS), they stop within two minutes of the
# trainer's end even when its event is lost.
SWEEP_MINUTES = 1
# States after which an experiment stack's run resource is settled, or the stack is going.
STACK_STATES = [
    "CREATE_COMPLETE",
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_COMPLETE",
    "UPDATE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "DELETE_IN_PROGRESS",
    "DELETE_COMPLETE",
    "DELETE_FAILED",
]


class RunSupervisor(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        platform_name: str,
        bucket: s3.IBucket,
        key: kms.IKey,
        notify_email: str,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.topic = sns.Topic(
            self,
            "Runs",
            display_name="DeepRacer Rollouts runs",
            master_key=key,
            enforce_ssl=True,
        )
        if notify_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(notify_email))

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Supervises every DeepRacer Rollouts run of the platform",
        )
        log_group = encrypted_log_group(self, "Logs", retention=log_retention, key=key)
        self.function = python_function(
            self,
            "Function",
            handler="supervisor.handler.on_event",
            role=self.role,
            timeout=Duration.minutes(3),
            # One at a time: two passes never race on a restart or a record (events queue; a
            # pass takes about a second per experiment with something running).
            reserved_concurrency=1,
            log_group=log_group,
            environment={
                "SUPERVISOR_CONFIG": stack.to_json_string(
                    {
                        "platform": platform_name,
                        "bucket": bucket.bucket_name,
                        "topicArn": self.topic.topic_arn,
                    }
                )
            },
            description="DeepRacer Rollouts: the run supervisor",
        )
        log_group.grant_write(self.role)
        skip(
            self.function,
            {
                **{k: v for k, v in LAMBDA_REASONS.items() if k != "CKV_AWS_115"},
                "CKV_AWS_116": "Invoked asynchronously by EventBridge and its schedule: every "
                "pass observes everything again, so a lost or failed event is made good by the "
                "next sweep a minute later; a dead-letter queue would hold events nobody needs.",
            },
        )
        self._rules(stack)
        self._permissions(stack, platform_name, bucket, key)

    # ------------------------------------------------------------------ triggers

    def _rules(self, stack: Stack) -> None:
        target = targets.LambdaFunction(
            self.function, retry_attempts=2, max_event_age=Duration.hours(1)
        )
        tagged = {EXPERIMENT_TAG: [{"exists": True}]}
        events.Rule(
            self,
            "JobEnded",
            description="A tagged rollout, restart or evaluation job ended",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["SUCCEEDED", "FAILED"], "tags": tagged},
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "TrainerEnded",
            description="A tagged training job ended",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={"TrainingJobStatus": ["Completed", "Failed", "Stopped"], "Tags": tagged},
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "StackSettled",
            description="An experiment stack settled or is being deleted",
            event_pattern=events.EventPattern(
                source=["aws.cloudformation"],
                detail_type=["CloudFormation Stack Status Change"],
                detail={
                    "stack-id": [
                        {
                            "prefix": f"arn:{stack.partition}:cloudformation:{stack.region}:"
                            f"{stack.account}:stack/{STACK_PREFIX}-"
                        }
                    ],
                    "status-details": {"status": STACK_STATES},
                },
            ),
            targets=[target],
        )
        events.Rule(
            self,
            "Sweep",
            description="The supervisor's sweep: the backstop for lost events",
            schedule=events.Schedule.rate(Duration.minutes(SWEEP_MINUTES)),
            targets=[target],
        )

    # ------------------------------------------------------------------ IAM

    def _permissions(self, stack: Stack, platform: str, bucket: s3.IBucket, key: kms.IKey) -> None:
        tagged_job = {"Null": {f"aws:ResourceTag/{EXPERIMENT_TAG}": "false"}}
        jobs = stack.format_arn(service="batch", resource="job", resource_name="*")
        training_jobs = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name="*"
        )
        experiment_stacks = stack.format_arn(
            service="cloudformation", resource="stack", resource_name=f"{STACK_PREFIX}-*/*"
        )
        platform_resource = {"StringEquals": {f"aws:ResourceTag/{PLATFORM_TAG}": platform}}
        data = bucket.bucket_arn
        statements = [
            iam.PolicyStatement(
                sid="ReadStacks",
                # DescribeStacks without a name (the sweep) takes no resource narrower than *.
                actions=["cloudformation:DescribeStacks"],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ReadExperimentStackResources",
                actions=["cloudformation:DescribeStackResources"],
                resources=[experiment_stacks],
            ),
            iam.PolicyStatement(
                sid="ReadJobs",
                # Batch's Describe*/List* and SageMaker's Search support no resource types.
                actions=[
                    "batch:DescribeJobQueues",
                    "batch:ListJobs",
                    "batch:DescribeJobs",
                    "sagemaker:Search",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="ReadTrainingJobs",
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[training_jobs],
            ),
            iam.PolicyStatement(
                sid="StopTaggedTrainingJobs",
                actions=["sagemaker:StopTrainingJob"],
                resources=[training_jobs],
                conditions=tagged_job,
            ),
            iam.PolicyStatement(
                sid="StopTaggedBatchJobs",
                actions=["batch:TerminateJob"],
                resources=[jobs],
                conditions=tagged_job,
            ),
            iam.PolicyStatement(
                sid="RestartWorkersOnThePlatformsQueues",
                actions=["batch:SubmitJob"],
                resources=[
                    stack.format_arn(service="batch", resource="job-queue", resource_name="*"),
                    # name:revision only: Batch evaluates a job definition's tags only when the
                    # submit names its revision (Batch user guide, "Restrict job submission by
                    # resource tags on job definition and job queue").
                    stack.format_arn(
                        service="batch", resource="job-definition", resource_name="*:*"
                    ),
                ],
                conditions=platform_resource,
            ),
            iam.PolicyStatement(
                sid="TagRestartedWorkers",
                actions=["batch:TagResource"],
                resources=[jobs],
                conditions={"Null": {f"aws:RequestTag/{EXPERIMENT_TAG}": "false"}},
            ),
            iam.PolicyStatement(
                sid="RunRecords",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[f"{data}/experiments/*/supervisor/*"],
            ),
            iam.PolicyStatement(
                sid="FinishMarks",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[f"{data}/experiments/*/runs/*/model/.finished"],
            ),
            iam.PolicyStatement(
                sid="ListRunMetrics",
                actions=["s3:ListBucket"],
                resources=[data],
                conditions={
                    "StringLike": {
                        "s3:prefix": [
                            "experiments/*/runs/*/metrics/*",
                            "experiments/*/runs/*/model/.finished",
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                sid="UseDataKeyThroughS3AndSns",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"s3.{stack.region}.amazonaws.com",
                            f"sns.{stack.region}.amazonaws.com",
                        ]
                    }
                },
            ),
        ]
        statements.append(
            iam.PolicyStatement(
                sid="PublishRunNews",
                # Not topic.grant_publish: it would add kms:GenerateDataKey* on the key for any
                # use; the statement above allows the key through SNS (and S3) only.
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
            )
        )
        for statement in statements:
            self.role.add_to_policy(statement)
        acknowledge(
            self.role,
            {
                "AwsSolutions-IAM5[Resource::*]": "DescribeStacks without a stack name, Batch's "
                "DescribeJobQueues/ListJobs/DescribeJobs and SageMaker Search have no resource "
                "types (Service Authorization Reference); they only read.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:"
                f"<AWS::AccountId>:stack/{STACK_PREFIX}-*/*]": "Only the project's experiment "
                "stacks, by their name prefix; read only.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:sagemaker:<AWS::Region>:"
                "<AWS::AccountId>:training-job/*]": "Training job names are run ids; stopping is "
                f"limited to jobs tagged {EXPERIMENT_TAG}.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:"
                "<AWS::AccountId>:job/*]": "Batch job ids are random; terminating is limited to "
                f"jobs tagged {EXPERIMENT_TAG}, tagging to new jobs that carry it.",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:"
                "<AWS::AccountId>:job-queue/*]": "Restarts go only to queues tagged "
                f"{PLATFORM_TAG}={platform} (the experiments' own).",
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:batch:<AWS::Region>:"
                "<AWS::AccountId>:job-definition/*:*]": "Restarts use only job definitions tagged "
                f"{PLATFORM_TAG}={platform} (the experiments' own).",
                f"AwsSolutions-IAM5[Resource::{token_name(bucket, 'Arn')}/experiments/*/supervisor/*]": (
                    "The supervisor's own run records, one per run (run ids are random)."
                ),
                f"AwsSolutions-IAM5[Resource::{token_name(bucket, 'Arn')}/experiments/*/runs/*/model/"
                ".finished]": "Only the finish mark of a run, which tells its rollouts the run is over.",
            },
        )
