import os

# Tests run on the CPU with float32, as in CI.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
