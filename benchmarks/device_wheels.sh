#!/bin/bash
# Downloads, into .whl/ (git-ignored), the wheels the lent GPU machine lacks for the device checks
# (benchmarks/device_checks.sh): its image has Python 3.12 with JAX, flax, optax, orbax and torch,
# but not MuJoCo, MJX, brax (whose MJX-ready assets the task families load), glfw and trimesh
# (imported by mujoco and MJX) nor tensorboardX. About 35 MB; the device tool carries at most
# 64 MiB a call. Run here, once per checkout, from the repository root.
set -euo pipefail
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl mujoco==3.17.0 mujoco-mjx==3.17.0 brax==0.14.2 tensorboardX==2.6.5 glfw trimesh
du -sh .whl
