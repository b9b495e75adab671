#!/usr/bin/env bash
# Runs while simapp/Dockerfile builds (cdk deploy of the platform): fails the build, naming every
# missing piece, when the simapp release no longer has an entry point this project starts. A
# release that moves one fails here, not forty minutes into a run.
#
# Where each path comes from (deepracer-simapp v6.0.5):
#   docker/Dockerfile.combined      WORKDIR /opt/ml/code; COPY docker/files/ml-code; run.sh copied
#                                   from docker/files/robomaker/run.sh
#   docker/files/ml-code/sage-train.sh
#                                   the distributed trainer (Redis + markov/training_worker.py)
#   docker/files/robomaker/run.sh   sources /opt/ros/jazzy and /opt/amazon/install/setup.bash,
#                                   then `ros2 launch deepracer_simulation_environment <file>`
#   bundle/src/deepracer_simulation_environment/launch/empty_world.launch.py
#                                   `taskset -c 2*ROLLOUT_IDX,2*ROLLOUT_IDX+1 gz sim ...`
set -uo pipefail

CODE_DIR="${SIMAPP_CODE_DIR:-/opt/ml/code}"
INSTALL_DIR="${SIMAPP_INSTALL_DIR:-/opt/amazon/install}"
MARKOV_DIR="${MARKOV_DIR:-${INSTALL_DIR}/sagemaker_rl_agent/lib/python3.12/site-packages/markov}"
LAUNCH_DIR="${INSTALL_DIR}/deepracer_simulation_environment/share/deepracer_simulation_environment/launch"
WRAPPER="${TASKSET_WRAPPER:-/usr/local/bin/taskset}"
REAL_TASKSET="${ROLLOUTS_REAL_TASKSET:-/usr/bin/taskset}"

problems=()
need_file() {  # need_file PATH WHAT
  [ -f "$1" ] || problems+=("$2: $1 is missing")
}

need_file "${CODE_DIR}/run.sh" "rollout launcher (rollout-entrypoint.sh runs it)"
need_file "${CODE_DIR}/sage-train.sh" "distributed trainer (the job's SAGEMAKER_PROGRAM)"
need_file "${LAUNCH_DIR}/distributed_training.launch.py" "rollout launch file"
need_file "${LAUNCH_DIR}/empty_world.launch.py" "Gazebo launch file"
need_file "${MARKOV_DIR}/training_worker.py" "markov package (trainer)"
need_file "${MARKOV_DIR}/rollout_worker.py" "markov package (rollouts)"
need_file "${REAL_TASKSET}" "util-linux taskset (the wrapper runs it for other forms)"
# run-finished.py (the entrypoint's "is the run over" check) runs on the image's python3.
"${PYTHON_FOR_CHECK:-python3}" -c "import boto3" 2>/dev/null \
  || problems+=("boto3 for python3: /opt/rollouts/run-finished.py imports it")

# The core-pinning fix: the launch file's `taskset` must resolve to the wrapper on the PATH that
# run.sh builds (it prepends /opt/ml and the ROS setup directories), and the wrapper must start a
# command on cores this build host does not have (worker 63 asks for 126,127).
if [ -f "${LAUNCH_DIR}/empty_world.launch.py" ] && ! grep -q "'taskset'" "${LAUNCH_DIR}/empty_world.launch.py"; then
  echo "note: empty_world.launch.py no longer calls taskset; the wrapper is unused" >&2
fi
resolved="$(
  set +u  # the ROS and conda setup scripts read variables that may be unset
  export PATH="/opt/ml/:${PATH}"
  for setup in /opt/ros/jazzy/setup.bash "${INSTALL_DIR}/setup.bash"; do
    # shellcheck disable=SC1090
    if [ -f "$setup" ]; then source "$setup" >/dev/null 2>&1; fi
  done
  if [ -f /root/anaconda/bin/activate ]; then
    # shellcheck disable=SC1091
    source /root/anaconda/bin/activate sagemaker_env >/dev/null 2>&1
  fi
  command -v taskset
)"
if [ "$resolved" != "$WRAPPER" ]; then
  problems+=("core-pinning fix: taskset resolves to '${resolved:-nothing}', not ${WRAPPER}")
fi
for mode in off map; do
  if ! ROLLOUTS_CPU_PINNING="$mode" "$WRAPPER" -c 126,127 true 2>/dev/null; then
    problems+=("core-pinning fix: '${WRAPPER} -c 126,127 true' fails with ROLLOUTS_CPU_PINNING=${mode}")
  fi
done

if [ "${#problems[@]}" -gt 0 ]; then
  echo "error: the simapp image lacks what DeepRacer Rollouts starts:" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  echo "Pin a simapp release whose layout matches (cdk context simappVersion) or update simapp/." >&2
  exit 1
fi
echo "simapp image checked: run.sh, sage-train.sh, launch files, markov, taskset wrapper"
