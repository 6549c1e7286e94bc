"""Loaded at start-up by the Python processes that ``benchmarks/compile_clock.py``'s script
starts (it puts this directory on their ``PYTHONPATH``): when ``COMPILE_CLOCK_DIR`` is set and
the process imports JAX, records its JAX compilation events from then on and writes them to
``<dir>/<pid>.json`` at exit, for ``compile_clock.py`` to add to its own. Processes that never
import JAX (helpers some libraries start) are left as they are."""
import os

if os.environ.get("COMPILE_CLOCK_DIR"):
    import importlib.abc
    import importlib.util
    import sys

    class _AfterJax(importlib.abc.MetaPathFinder):
        """Starts recording right after ``jax`` itself has been imported."""

        def find_spec(self, name, path=None, target=None):
            if name != "jax":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec("jax")
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                here = os.path.dirname(os.path.abspath(__file__))
                clock_spec = importlib.util.spec_from_file_location(
                    "_compile_clock", os.path.join(os.path.dirname(here), "compile_clock.py"))
                clock = importlib.util.module_from_spec(clock_spec)
                clock_spec.loader.exec_module(clock)
                clock.record(os.path.join(os.environ["COMPILE_CLOCK_DIR"],
                                          f"{os.getpid()}.json"))
            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterJax())
