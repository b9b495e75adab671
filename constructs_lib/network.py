"""The rollout network: VPC, subnets per role, S3 gateway endpoint, rollouts' shared egress group."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from constructs_lib.checkov import skip_lambda_findings
from constructs_lib.retention import encrypted_log_group

# Interface endpoints that rollouts need when they have no internet route (egress "endpoints").
# Fargate tasks (platform 1.4.0+) pull images and send logs through their own network interface,
# so they need ECR (api and dkr), the S3 gateway endpoint and CloudWatch Logs (Amazon ECS
# developer guide, "Amazon ECS interface VPC endpoints (AWS PrivateLink)"); no ECS agent runs in
# them, so the ECS agent and telemetry endpoints of EC2 container instances are not needed.
ROLLOUT_INTERFACE_ENDPOINTS = (
    ("Ecr", ec2.InterfaceVpcEndpointAwsService.ECR),
    ("EcrDocker", ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER),
    ("Logs", ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS),
    ("KinesisVideo", ec2.InterfaceVpcEndpointAwsService("kinesisvideo")),
)


class RolloutNetwork(Construct):
    """VPC in which the trainer (SageMaker, VPC mode) and the rollouts meet on Redis.

    Egress modes (platform setting ``egress``):
    - ``public`` (default, no idle cost): rollouts in public subnets with public IPs and a security
      group without any inbound rule; trainer in isolated subnets, S3 through the gateway endpoint.
    - ``nat``: rollouts in private subnets behind one NAT gateway.
    - ``endpoints``: rollouts in isolated subnets reaching ECR, logs and video through
      interface endpoints (no internet at all).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        az_count: int,
        egress: str,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        rollout_subnet_type = {
            "public": ec2.SubnetType.PUBLIC,
            "nat": ec2.SubnetType.PRIVATE_WITH_EGRESS,
            "endpoints": ec2.SubnetType.PRIVATE_ISOLATED,
        }[egress]
        subnets = [
            ec2.SubnetConfiguration(
                name="trainer", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=22
            )
        ]
        if egress != "endpoints":
            # Public subnets carry the rollouts ("public") or the NAT gateway ("nat").
            subnets.append(
                ec2.SubnetConfiguration(
                    name="public",
                    subnet_type=ec2.SubnetType.PUBLIC,
                    cidr_mask=22,
                    map_public_ip_on_launch=egress == "public",
                )
            )
        if egress != "public":
            subnets.append(
                ec2.SubnetConfiguration(
                    name="rollouts", subnet_type=rollout_subnet_type, cidr_mask=20
                )
            )
        flow_log_group = encrypted_log_group(self, "FlowLogs", retention=log_retention, key=log_key)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
            max_azs=az_count,
            # Explicit AZ names would need a lookup; the AZ count alone keeps synth offline.
            nat_gateways=1 if egress == "nat" else 0,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        # restrict_default_security_group adds a stack-wide custom resource provider function.
        restrict_provider = Stack.of(self).node.try_find_child(
            "Custom::VpcRestrictDefaultSGCustomResourceProvider"
        )
        if restrict_provider is not None:
            skip_lambda_findings(restrict_provider)
        self.trainer_subnets = self.vpc.select_subnets(subnet_group_name="trainer")
        self.rollout_subnets = self.vpc.select_subnets(
            subnet_group_name="public" if egress == "public" else "rollouts"
        )
        self.assign_public_ip = egress == "public"

        # Every experiment brings its own trainer and rollout security groups
        # (constructs_lib/experiment_network.py): a trainer's Redis admits only its own
        # experiment's rollouts. This shared group carries what all rollouts need alike,
        # HTTPS out, and is the one the interface endpoints admit; it opens no port of anything.
        self.rollout_egress_security_group = ec2.SecurityGroup(
            self,
            "RolloutEgressSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="DeepRacer rollouts of every experiment: no inbound; HTTPS out",
        )
        # HTTPS to "anywhere": in the "endpoints" mode the subnets are isolated, so it reaches the
        # interface endpoints and S3 (gateway endpoint on public S3 addresses: ECR image layers
        # and all training data live there) and nothing else.
        self.rollout_egress_security_group.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to ECR, S3, CloudWatch Logs and Kinesis Video",
        )

        if egress == "endpoints":
            endpoint_sg = ec2.SecurityGroup(
                self,
                "EndpointSecurityGroup",
                vpc=self.vpc,
                allow_all_outbound=False,
                description="Interface endpoints: HTTPS from rollouts",
            )
            endpoint_sg.add_ingress_rule(
                self.rollout_egress_security_group,
                ec2.Port.tcp(443),
                "HTTPS from rollout workers",
            )
            for name, service in ROLLOUT_INTERFACE_ENDPOINTS:
                self.vpc.add_interface_endpoint(
                    name,
                    service=service,
                    security_groups=[endpoint_sg],
                    private_dns_enabled=True,
                    open=False,
                    subnets=ec2.SubnetSelection(subnet_group_name="rollouts"),
                )
