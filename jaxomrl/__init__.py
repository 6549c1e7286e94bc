"""jaxomrl: offline meta-reinforcement learning in JAX, whole experiments on the accelerator."""
__version__ = "0.1.0"
