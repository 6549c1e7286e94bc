#!/bin/bash
# Issue 21's accelerator checks as one prepared run, sized for a lent machine's 15 minutes of
# device time (about 6-8 min of commands, leaving time to start the machine and to rerun once):
#   1. rollout: MJX env steps/s of cheetah_vel at 4,096 and 32,768 environments (target: >= 1 M),
#      beside MuJoCo C on the machine's CPU cores;
#   2. learner: the meta-policy update with 1, 5 and 20 seeds against the PyTorch loop on the same
#      GPU (target: >= 20x with 20 seeds), both heads;
#   3. model rollouts: ReDA's ensembles stepping start states in parallel;
#   4. pipeline: collect -> train -> evaluate of the README main job's collection and three of its
#      specs (R2PGO, FOCAL, BC) with its flags, every phase timed (pipeline_phases.py).
# Every benchmark runs on its own (a failure does not stop the others); each one's output goes to
# $OUT/<name>.log, whose last line is its JSON. A check whose time limit would end past BUDGET
# seconds (default 570, inside the device tool's 600 s per command) is skipped and says so in
# summary.log; the checks run in the order above, most wanted first. CHECKS="pipeline" (names
# as in summary.log) runs only those. Usage:
#   here, once:   bash benchmarks/device_wheels.sh
#   device tool:  run(command="bash benchmarks/device_checks.sh", carry=[".whl"], timeout_s=600)
# SMALL=1 runs the same commands at CPU sizes (a dry run before spending device time). The device
# image's JAX (0.11.x in 2026-11) is newer than requirements.txt's and within setup.py's range,
# which CI tests at both ends (requirements.txt, requirements/jax012.txt).
set -uo pipefail
OUT=${OUT:-/tmp/device_checks}
mkdir -p "$OUT"
if [ -d .whl ]; then
  # The README's GPU install, `pip install -e ".[cuda12]"`, offline: the image's JAX and its CUDA
  # plugin satisfy the extra, .whl/ (benchmarks/device_wheels.sh) holds what the image lacks.
  if python3 -m pip install --no-index --find-links .whl --no-build-isolation -e ".[cuda12]" \
      > "$OUT/install.log" 2>&1; then
    echo "install: pip install -e .[cuda12] (offline, the image's JAX)" | tee -a "$OUT/summary.log"
  else   # e.g. an image whose JAX is outside setup.py's range or has no plugin by that name
    echo "install: the cuda12 extra did not resolve here (install.log); .whl/ on PYTHONPATH" \
      | tee -a "$OUT/summary.log"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-570}
CHECKS=${CHECKS:-rollout learner_hyper learner_concat model_rollout pipeline}
MAIN_TRAIN="--family=point_robot_sparse --algo=r2pgo,focal,bc --seeds=3 --hidden=64,64"
if [ "${SMALL:-0}" = 1 ]; then
  ENVS=64,256; STEPS=10; C_STEPS=2000; SEEDS=1,2; UPDATES=5; HIDDEN=32,32; STARTS=64
  PIPE_COLLECT="--family=point_robot_sparse --split=all --sac_steps=2400 --checkpoint_every_steps=200"
  PIPE_TRAIN="$MAIN_TRAIN --encoder_steps=20 --policy_steps=20 --chunk_steps=10 --eval_every=10 \
    --eval_episodes=1 --eval_contexts=2"
else
  ENVS=4096,32768; STEPS=100; C_STEPS=200000; SEEDS=1,5,20; UPDATES=200; HIDDEN=256,256
  STARTS=2048,16384
  PIPE_COLLECT="--family=point_robot_sparse --split=all"
  PIPE_TRAIN="$MAIN_TRAIN --encoder_steps=1000 --policy_steps=3000 --eval_every=1000 \
    --eval_episodes=3 --eval_contexts=16"
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; \
 python3 -c "import jax; print('jax', jax.__version__, jax.devices())") > "$OUT/machine.log" 2>&1
run() {  # name, seconds, command...
  local name=$1 limit=$2; shift 2
  [[ " $CHECKS " == *" $name "* ]] || return 0
  if (( SECONDS + limit > BUDGET )); then
    echo "$name: skipped at ${SECONDS} s (its ${limit} s limit would pass the ${BUDGET} s budget)" \
      | tee -a "$OUT/summary.log"
    return
  fi
  local t=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "$name: exit $? in $((SECONDS - t)) s" | tee -a "$OUT/summary.log"
}
run rollout 200 python3 benchmarks/rollout_throughput.py --families=cheetah_vel \
  --num_envs=$ENVS --steps=$STEPS --repeats=2 --c_steps=$C_STEPS
run learner_hyper 120 python3 benchmarks/learner_throughput.py --seeds=$SEEDS \
  --updates=$UPDATES --repeats=2 --hidden=$HIDDEN --head=hyper
run learner_concat 100 python3 benchmarks/learner_throughput.py --seeds=$SEEDS \
  --updates=$UPDATES --repeats=2 --hidden=$HIDDEN --head=concat
run model_rollout 60 python3 benchmarks/model_rollout_throughput.py --starts=${STARTS:-64}
rm -rf /tmp/device_pipeline
run pipeline 200 python3 benchmarks/pipeline_phases.py --out=/tmp/device_pipeline \
  --collect="$PIPE_COLLECT" --train="$PIPE_TRAIN" --evaluate="--from_training"
cat "$OUT/machine.log" "$OUT/summary.log"
