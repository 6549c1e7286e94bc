from setuptools import find_packages, setup

setup(
    name="jaxomrl",
    version="0.1.0",
    description="Offline meta-reinforcement learning in JAX/Flax with MuJoCo MJX task families",
    packages=find_packages(include=["jaxomrl", "jaxomrl.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax", "jaxlib", "flax", "optax", "chex", "mujoco", "mujoco-mjx", "brax",
        "orbax-checkpoint", "numpy", "absl-py", "tensorboardX",
    ],
    extras_require={"test": ["pytest"], "plots": ["matplotlib", "scikit-learn"], "bench": ["torch"]},
)
