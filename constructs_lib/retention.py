"""CloudWatch Logs: retention from the platform setting ``logRetentionDays``, and log groups
encrypted with the platform key (its key policy lets CloudWatch Logs of this account use it:
``constructs_lib/storage.py``)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

_NAMES = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip


def log_retention(days: int) -> logs.RetentionDays:
    """``days`` must be one of ``rollouts.platform.LOG_RETENTION_CHOICES`` (validated there)."""
    return logs.RetentionDays[_NAMES[days]]


def encrypted_log_group(
    scope: Construct, construct_id: str, *, retention: logs.RetentionDays, key: kms.IKey
) -> logs.LogGroup:
    """A log group encrypted with the platform key; logs go with the stack (data does not)."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=retention,
        encryption_key=key,
        removal_policy=RemovalPolicy.DESTROY,
    )
