from setuptools import find_packages, setup

# The range CI tests: requirements.txt's set (Python 3.11, jax 0.9.2) and requirements/jax012.txt's
# (Python 3.12+, jax 0.12.0.1). jax 0.10.x is left out: it hangs XLA's CPU thread pool on large
# vmapped MJX programs (README, "Known issues"). flax 0.12.9+ is what jax 0.12 needs.
JAX = ">=0.9.2,!=0.10.*,<0.13"

setup(
    name="jaxomrl",
    version="0.1.0",
    description="Offline meta-reinforcement learning in JAX/Flax with MuJoCo MJX task families",
    packages=find_packages(include=["jaxomrl", "jaxomrl.*"]),
    python_requires=">=3.11",
    install_requires=[
        f"jax{JAX}", f"jaxlib{JAX}", "flax>=0.12.6,<0.13", "optax>=0.2.8,<0.3",
        "chex>=0.1.92", "mujoco>=3.17,<4", "mujoco-mjx>=3.17,<4", "brax>=0.14.2,<0.15",
        "orbax-checkpoint>=0.12.8,<0.13", "numpy>=2", "absl-py", "tensorboardX", "filelock>=3.12",
        "scipy>=1.15",
    ],
    extras_require={
        # NVIDIA GPUs: the JAX CUDA 12 plugin of the installed JAX's version, with CUDA's pip
        # wheels (README, "On a GPU").
        "cuda12": [f"jax[cuda12]{JAX}"],
        "test": ["pytest", "pytest-xdist"],
        "plots": ["matplotlib", "scikit-learn"],
        "data": ["minari", "h5py", "gymnasium"],
        "bench": ["torch"],
    },
)
