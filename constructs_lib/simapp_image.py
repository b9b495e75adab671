"""The simulation application image in the account's private ECR (SageMaker runs no other)."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from constructs import Construct

SIMAPP_DIR = Path(__file__).resolve().parent.parent / "simapp"


class SimappImage(Construct):
    """``simapp/Dockerfile`` built FROM a pinned community simapp release at deploy time.

    Synth only stages the build context (no Docker needed); ``cdk deploy`` builds and pushes it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, base_image: str) -> None:
        super().__init__(scope, construct_id)
        self.asset = ecr_assets.DockerImageAsset(
            self,
            "Image",
            directory=str(SIMAPP_DIR),
            build_args={"SIMAPP_IMAGE": base_image},
            platform=ecr_assets.Platform.LINUX_AMD64,
            exclude=["**/__pycache__", "**/*.pyc", "README.md"],
        )
        self.image_uri = self.asset.image_uri
        self.container_image = ecs.ContainerImage.from_docker_image_asset(self.asset)

    @property
    def repository_arn(self) -> str:
        return self.asset.repository.repository_arn

    def grant_pull(self, grantee: iam.IGrantable) -> None:
        self.asset.repository.grant_pull(grantee)
