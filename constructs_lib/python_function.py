"""The project's Python Lambdas: one asset of ``lambda/`` (every handler package, no caches), the
same runtime and architecture, an encrypted log group of their own."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.fanout import LAMBDA_DIR, LAMBDA_EXCLUDES


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    role: iam.IRole,
    timeout: Duration,
    log_group: logs.ILogGroup,
    environment: Mapping[str, str],
    description: str,
    reserved_concurrency: int | None = None,
) -> lambda_.Function:
    return lambda_.Function(
        scope,
        construct_id,
        runtime=lambda_.Runtime.PYTHON_3_14,
        architecture=lambda_.Architecture.ARM_64,
        code=lambda_.Code.from_asset(str(LAMBDA_DIR), exclude=LAMBDA_EXCLUDES),
        handler=handler,
        role=role,
        timeout=timeout,
        memory_size=256,
        reserved_concurrent_executions=reserved_concurrency,
        log_group=log_group,
        environment=dict(environment),
        description=description,
    )
