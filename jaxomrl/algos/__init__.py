"""Algorithms as recipes over the learners: phases the experiment runner trains, plus evaluation.

``registry.make(spec, settings, family, num_train_tasks)`` builds a named algorithm (``r2pgo``,
its ablations, ``bc`` and the baselines ``om_bc``, ``om_sac``, ``focal``, ``corro``);
``offline_meta`` is the context-based offline meta-RL recipe behind them.
"""
from jaxomrl.algos.base import Algorithm, Phase, make_train
from jaxomrl.algos.registry import (ALGORITHMS, Settings, make, make_config, parse_spec,
                                    with_family)

__all__ = ["Algorithm", "Phase", "make_train", "ALGORITHMS", "Settings", "make", "make_config", "parse_spec",
           "with_family"]
