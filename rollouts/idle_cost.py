"""Estimate what a synthesized platform costs per month while no experiment runs.

Only resources that bill by the hour or month whether used or not are counted; usage-billed
ones (S3 requests, Batch instances at 0 vCPUs, Kinesis Video ingestion, Lambda) cost nothing
idle. Prices are us-east-1 list prices and an approximation: check your region's pricing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HOURS_PER_MONTH = 730
NAT_GATEWAY_HOURLY = 0.045
INTERFACE_ENDPOINT_HOURLY_PER_AZ = 0.01
KMS_KEY_MONTHLY = 1.00
ECR_GB_MONTHLY = 0.10
SIMAPP_IMAGE_GB = 6.0  # the simapp image is several GB compressed
# A scheduled Lambda (the run supervisor's sweep) bills for every invocation, idle or not.
MINUTES_PER_MONTH = HOURS_PER_MONTH * 60
LAMBDA_ARM_GB_SECOND = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1_000_000
LOGS_INGEST_PER_GB = 0.50
# An idle sweep makes four reads (job queues, two training-job searches, stacks): about 0.4 s of
# API latency; 1 s is counted, and ~300 bytes of log lines (START, END, REPORT, one summary).
IDLE_SWEEP_SECONDS = 1.0
IDLE_SWEEP_LOG_BYTES = 300
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours)\)$")


@dataclass(frozen=True)
class CostLine:
    item: str
    count: int
    monthly_usd: float


def idle_monthly_cost(template: Mapping[str, Any]) -> list[CostLine]:
    resources = template.get("Resources", {}).values()

    def of_type(kind: str) -> list[Mapping[str, Any]]:
        return [r for r in resources if r.get("Type") == kind]

    lines: list[CostLine] = []
    nats = of_type("AWS::EC2::NatGateway")
    if nats:
        lines.append(
            CostLine(
                "NAT gateway (hourly)", len(nats), len(nats) * NAT_GATEWAY_HOURLY * HOURS_PER_MONTH
            )
        )
    interface_azs = sum(
        len(r.get("Properties", {}).get("SubnetIds", []))
        for r in of_type("AWS::EC2::VPCEndpoint")
        if r.get("Properties", {}).get("VpcEndpointType") == "Interface"
    )
    if interface_azs:
        lines.append(
            CostLine(
                "interface endpoint x AZ (hourly)",
                interface_azs,
                interface_azs * INTERFACE_ENDPOINT_HOURLY_PER_AZ * HOURS_PER_MONTH,
            )
        )
    keys = of_type("AWS::KMS::Key")
    if keys:
        lines.append(CostLine("KMS customer-managed key", len(keys), len(keys) * KMS_KEY_MONTHLY))
    image_parameters = [
        r
        for r in of_type("AWS::SSM::Parameter")
        if str(r.get("Properties", {}).get("Name", "")).endswith("/image-uri")
    ]
    if image_parameters:
        lines.append(
            CostLine(
                f"simapp image in ECR (~{SIMAPP_IMAGE_GB:g} GB)",
                1,
                SIMAPP_IMAGE_GB * ECR_GB_MONTHLY,
            )
        )
    lines.extend(_scheduled_lambdas(template))
    return lines


def _scheduled_lambdas(template: Mapping[str, Any]) -> list[CostLine]:
    resources = template.get("Resources", {})
    lines = []
    for rule in (r for r in resources.values() if r.get("Type") == "AWS::Events::Rule"):
        props = rule.get("Properties", {})
        match = RATE.match(str(props.get("ScheduleExpression", "")))
        if not match:
            continue
        minutes = int(match.group(1)) * (60 if match.group(2).startswith("hour") else 1)
        for target in props.get("Targets", []):
            arn = target.get("Arn")
            function = arn.get("Fn::GetAtt", [None])[0] if isinstance(arn, Mapping) else None
            if function not in resources:
                continue
            memory_gb = resources[function].get("Properties", {}).get("MemorySize", 128) / 1024
            invocations = MINUTES_PER_MONTH / minutes
            monthly = invocations * (
                IDLE_SWEEP_SECONDS * memory_gb * LAMBDA_ARM_GB_SECOND
                + LAMBDA_REQUEST
                + IDLE_SWEEP_LOG_BYTES / 1e9 * LOGS_INGEST_PER_GB
            )
            lines.append(
                CostLine(
                    f"scheduled Lambda every {minutes} min (~{invocations:,.0f} calls)", 1, monthly
                )
            )
    return lines


def total(lines: list[CostLine]) -> float:
    return sum(line.monthly_usd for line in lines)
