#!/usr/bin/env bash
# Entry point of one rollout worker (or one evaluation leg) on AWS Batch.
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
# Relative to SAGEMAKER_SHARED_S3_PREFIX: the simapp joins prefix and name
# (bundle/src/deepracer_simulation_environment/scripts/download_params_and_roslaunch_agent.py).
S3_YAML_NAME="$(pick "${ROLLOUT_YAML_NAMES:?}" "${ROLLOUT_IDX}")"
KINESIS_VIDEO_STREAM_NAME="$(pick "${ROLLOUT_VIDEO_STREAMS:-}" "${ROLLOUT_IDX}")"
export WORLD_NAME S3_YAML_NAME KINESIS_VIDEO_STREAM_NAME
# Each worker keeps its own Gazebo transport partition (GZ_IP=127.0.0.1 in run.sh): Fargate tasks
# have a network of their own, but the partition keeps two workers apart wherever they share one.
export GZ_PARTITION="${GZ_PARTITION:-rollout-${AWS_BATCH_JOB_ID:-local}-${ROLLOUT_IDX}}"
echo "rollout ${ROLLOUT_IDX}: world=${WORLD_NAME} params=${S3_YAML_NAME} video=${KINESIS_VIDEO_STREAM_NAME:-off}"

# The simapp 6.x rollout launcher (deepracer-simapp docker/Dockerfile.combined copies
# docker/files/robomaker/run.sh to /opt/ml/code/run.sh; "run" keeps our ROLLOUT_IDX, the second
# argument names the ROS 2 launch file). An evaluation sets ROLLOUT_LAUNCH_FILE to
# evaluation.launch.py (bundle/src/deepracer_simulation_environment/launch/, which reads its
# params from MODEL_S3_BUCKET/MODEL_S3_PREFIX + S3_YAML_NAME, as deepracer-for-cloud's
# scripts/evaluation/start.sh runs it). SIMAPP_ROLLOUT_COMMAND overrides the whole command line.
case "${ROLLOUT_LAUNCH_FILE:=distributed_training.launch.py}" in
  distributed_training.launch.py|evaluation.launch.py) ;;
  *) echo "ROLLOUT_LAUNCH_FILE=${ROLLOUT_LAUNCH_FILE}: not allowed (distributed_training.launch.py or evaluation.launch.py)" >&2; exit 64;;
esac
command="${SIMAPP_ROLLOUT_COMMAND:-${SIMAPP_CODE_DIR:-/opt/ml/code}/run.sh run ${ROLLOUT_LAUNCH_FILE}}"

# How a run that ended normally ends here with exit 0 (SUCCEEDED), not 143 (FAILED):
# - The simapp ends a rollout or an evaluation leg itself through /opt/ml/code/shutdown.sh
#   (`kill 1`, which the init process passes on as SIGTERM); before that, a normal end writes
#   $HOME/STOP_NODE_MONITOR_FILE and an error also $HOME/EXCEPTION_HANDLER_SYNC_FILE
#   (deepracer-simapp bundle/markov/utils.py stop_ros_node_monitor, cancel_simulation_job;
#   bundle/markov/log_handler/constants.py; exception_handler.py).
# - The run is over when the run's model/.finished exists: the trainer writes it in the finally of
#   markov/training_worker.py, and the run supervisor writes it when the trainer was stopped (a
#   time limit kills the trainer before that finally runs). The simapp's rollouts read only a local
#   copy, refreshed with each new checkpoint (rl_coach rollout_worker.py), so a rollout waiting for
#   a checkpoint would never see it: a watcher here looks every ROLLOUT_FINISHED_POLL_SECONDS and
#   ends the simulation itself.
# Any other SIGTERM (CancelJob/TerminateJob, a Spot reclaim) keeps 143.
SIMAPP_HOME="${SIMAPP_HOME:-${HOME:-/root}}"
finished_check="${ROLLOUT_FINISHED_CHECK:-python3 /opt/rollouts/run-finished.py}"
poll_seconds="${ROLLOUT_FINISHED_POLL_SECONDS:-15}"

simapp_ended_normally() {
  [ -f "${SIMAPP_HOME}/STOP_NODE_MONITOR_FILE" ] && [ ! -f "${SIMAPP_HOME}/EXCEPTION_HANDLER_SYNC_FILE" ]
}

# CancelJob/TerminateJob send SIGTERM to the container's init (the job definition enables it),
# which passes it to this script. run.sh starts ros2 launch in the background, so the signal goes
# to the launcher's whole process group, not only to its first process.
set -m  # the launcher gets its own process group (its pid is the group id)
bash -c "$command" &
launcher=$!
forward() {
  echo "rollout ${ROLLOUT_IDX}: $1 received, stopping the simulation" >&2
  kill "-$1" -- "-${launcher}" 2>/dev/null || true
}
run_finished=0
finished() {
  run_finished=1
  echo "rollout ${ROLLOUT_IDX}: the run finished (model/.finished): ending the simulation" >&2
  kill -TERM -- "-${launcher}" 2>/dev/null || true
}
trap 'forward TERM' TERM
trap 'forward INT' INT
trap finished USR1
# The watcher only asks; this shell decides (a check that fails or is unsure counts as "not yet").
if [ "${ROLLOUT_LAUNCH_FILE}" = distributed_training.launch.py ] && [ "${poll_seconds}" != 0 ]; then
  (
    trap - TERM INT USR1
    while sleep "${poll_seconds}"; do
      if ${finished_check}; then kill -USR1 $$ 2>/dev/null; exit 0; fi
    done
  ) </dev/null >/dev/null 2>&1 &  # holds none of the job's output open
  watcher=$!
else
  watcher=""
fi
status=0
wait "$launcher" || status=$?
# A trapped signal interrupts `wait` (status > 128) while the launcher is still shutting down.
while kill -0 "$launcher" 2>/dev/null; do
  wait "$launcher" || status=$?
done
# The watcher has a process group of its own (set -m): its sleep goes with it.
if [ -n "${watcher}" ]; then kill -- "-${watcher}" 2>/dev/null || true; fi
if [ "$status" -ne 0 ] && { [ "${run_finished}" = 1 ] || simapp_ended_normally; }; then
  echo "rollout ${ROLLOUT_IDX}: the simulation ended normally (launcher status ${status}): exit 0" >&2
  status=0
fi
exit "$status"
