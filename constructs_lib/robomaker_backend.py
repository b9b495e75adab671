"""AWS RoboMaker rollout backend: the workshop's design, kept so its experiments still synthesize.

AWS retired RoboMaker on 2025-09-10: this synthesizes and validates, and synth warns that a
deploy will fail. Simulation jobs have no CloudFormation resource; the fan-out Lambda starts them.
"""

from __future__ import annotations

from aws_cdk import Annotations
from aws_cdk import aws_robomaker as robomaker
from aws_cdk import aws_s3 as s3
from constructs import Construct

from constructs_lib.simapp_image import SimappImage

BUNDLE_KEY = "robomaker/simulation_ws.tar.gz"
RETIRED_WARNING = (
    "AWS RoboMaker was retired on 2025-09-10: this backend synthesizes and validates, but "
    "deploying it fails. Use backend=batch (the default) to run rollouts."
)


class RoboMakerRolloutBackend(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        image: SimappImage,
        app_form: str,
    ) -> None:
        super().__init__(scope, construct_id)
        if app_form == "bundle":
            # The workshop's settings: ROS Kinetic + Gazebo 7 bundle uploaded to the data bucket.
            self.application = robomaker.CfnSimulationApplication(
                self,
                "SimulationApplication",
                robot_software_suite=robomaker.CfnSimulationApplication.RobotSoftwareSuiteProperty(
                    name="ROS", version="Kinetic"
                ),
                simulation_software_suite=(
                    robomaker.CfnSimulationApplication.SimulationSoftwareSuiteProperty(
                        name="Gazebo", version="7"
                    )
                ),
                rendering_engine=robomaker.CfnSimulationApplication.RenderingEngineProperty(
                    name="OGRE", version="1.x"
                ),
                sources=[
                    robomaker.CfnSimulationApplication.SourceConfigProperty(
                        architecture="X86_64", s3_bucket=bucket.bucket_name, s3_key=BUNDLE_KEY
                    )
                ],
            )
        else:
            # The container form, the only one the service accepted in its last years.
            self.application = robomaker.CfnSimulationApplication(
                self,
                "SimulationApplication",
                robot_software_suite=robomaker.CfnSimulationApplication.RobotSoftwareSuiteProperty(
                    name="General"
                ),
                simulation_software_suite=(
                    robomaker.CfnSimulationApplication.SimulationSoftwareSuiteProperty(
                        name="SimulationRuntime"
                    )
                ),
                environment=image.image_uri,
            )
        self.application_arn = self.application.attr_arn
        Annotations.of(self).add_warning_v2("rollouts:robomaker-retired", RETIRED_WARNING)
