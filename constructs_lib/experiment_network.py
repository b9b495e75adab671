"""One experiment's security groups: its trainer's Redis admits its own rollouts and nothing else.

The trainer (SageMaker, VPC mode) listens for the rollouts' experience on Redis 6379 without a
password (the simapp connects with ``redis.Redis(address, port)`` and no credentials:
``bundle/markov/deepracer_memory.py``), so the network is what keeps experiment A's rollouts,
which run A's reward function, away from B's trainer. Each experiment owns both groups; the trainer group admits 6379 only from this
experiment's rollout group. Batch compute environments fix their security groups, which is why
each experiment on Batch also owns its compute environment (``rollout_compute.py``); RoboMaker
takes the groups per simulation job.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

REDIS_PORT = 6379


class ExperimentSecurityGroups(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, vpc_id: str) -> None:
        super().__init__(scope, construct_id)
        # Only the id is used: no subnets are selected from this reference.
        vpc = ec2.Vpc.from_vpc_attributes(self, "Vpc", vpc_id=vpc_id, availability_zones=["-"])
        self.trainer = ec2.SecurityGroup(
            self,
            "Trainer",
            vpc=vpc,
            allow_all_outbound=False,
            description="DeepRacer trainer: Redis 6379 from the rollouts of this experiment only",
        )
        self.rollouts = ec2.SecurityGroup(
            self,
            "Rollouts",
            vpc=vpc,
            allow_all_outbound=False,
            description="DeepRacer rollouts: no inbound; out to the trainer Redis of this experiment",
        )
        self.trainer.add_ingress_rule(
            self.rollouts, ec2.Port.tcp(REDIS_PORT), "Redis experience stream from the rollouts"
        )
        self.rollouts.add_egress_rule(
            self.trainer, ec2.Port.tcp(REDIS_PORT), "Redis on this experiment's trainer"
        )
        # Trainer subnets are isolated: their only route out is the S3 gateway endpoint, so HTTPS
        # "anywhere" reaches S3 and nothing else (the S3 prefix-list id differs per region and
        # would need a synth-time lookup).
        self.trainer.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "S3 via the gateway endpoint (isolated subnets)"
        )
