#!/usr/bin/env bash
# Entry point of one rollout worker on AWS Batch.
# An array job gives every child the same environment plus AWS_BATCH_JOB_ARRAY_INDEX (which we may
# not set ourselves), so the per-worker values arrive as comma-separated lists and are picked here.
set -euo pipefail

ROLLOUT_IDX="${AWS_BATCH_JOB_ARRAY_INDEX:-${ROLLOUT_IDX:-0}}"

pick() {  # pick LIST INDEX: element INDEX of a comma-separated LIST, or its only element
  local IFS=','
  read -r -a items <<< "$1"
  if [ "${#items[@]}" -eq 0 ]; then echo "";
  elif [ "${#items[@]}" -eq 1 ]; then echo "${items[0]}";
  elif [ "$2" -lt "${#items[@]}" ]; then echo "${items[$2]}";
  else echo "rollout ${2}: list has only ${#items[@]} entries: $1" >&2; exit 64; fi
}

export ROLLOUT_IDX
WORLD_NAME="$(pick "${ROLLOUT_WORLD_NAMES:?}" "${ROLLOUT_IDX}")"
S3_YAML_NAME="$(pick "${ROLLOUT_YAML_NAMES:?}" "${ROLLOUT_IDX}")"
KINESIS_VIDEO_STREAM_NAME="$(pick "${ROLLOUT_VIDEO_STREAMS:-}" "${ROLLOUT_IDX}")"
export WORLD_NAME S3_YAML_NAME KINESIS_VIDEO_STREAM_NAME
echo "rollout ${ROLLOUT_IDX}: world=${WORLD_NAME} params=${S3_YAML_NAME} video=${KINESIS_VIDEO_STREAM_NAME:-off}"

# Hand over to the simapp's distributed rollout launcher (ROS 2 launch file in simapp 6.x).
# SIMAPP_ROLLOUT_COMMAND overrides the whole command line, e.g. for another simapp release.
exec bash -c "${SIMAPP_ROLLOUT_COMMAND:-/opt/simapp/run.sh run distributed_training.launch.py}"
