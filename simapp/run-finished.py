"""Exit 0 when this rollout's run is over (``model/.finished`` exists under the run's prefix),
1 when it is not, 2 when it cannot tell. The rollout entrypoint asks it every few seconds.

The rollout's environment names the run's bucket and prefix (SAGEMAKER_SHARED_S3_BUCKET and
SAGEMAKER_SHARED_S3_PREFIX, set by the fan-out); its role may read the run's model/ folder. The
simapp image ships boto3 (its markov package uses it).
"""

import os
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

ABSENT = ("404", "NoSuchKey", "NotFound", "403", "AccessDenied")


def main() -> int:
    bucket = os.environ.get("SAGEMAKER_SHARED_S3_BUCKET")
    prefix = os.environ.get("SAGEMAKER_SHARED_S3_PREFIX")
    if not bucket or not prefix:
        return 2
    s3 = boto3.client("s3", region_name=os.environ.get("APP_REGION") or None)
    try:
        s3.head_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/model/.finished")
    except ClientError as error:
        return 1 if error.response.get("Error", {}).get("Code") in ABSENT else 2
    except BotoCoreError:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
