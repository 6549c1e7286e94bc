"""The collection pipeline: SAC in checkpointed chunks (resumable), then every checkpoint
evaluated and the selected ones rolled out into the datasets (the package's docstring)."""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxomrl.data import dataset as dataset_lib
from jaxomrl.errors import Interrupted
from jaxomrl.experiment import guards
from jaxomrl.experiment.checkpoint import Checkpointer
from jaxomrl.experiment.collect.config import CollectConfig, CollectConfigError, select_tasks
from jaxomrl.experiment.collect.programs import (CollectState, check_finite, evaluation_keys,
                                                 fresh_state, programs_for, restore_state)
from jaxomrl.experiment.collect.store import (CollectResult, check_config_file, completed,
                                              summary_of, write_progress)
from jaxomrl.io import atomic_write_text


def _default_log(msg: str) -> None:
    print(msg, flush=True)


def collect(config: CollectConfig, out_dir: str, *, log: Callable[[str], None] = _default_log,
            stop_after_chunks: Optional[int] = None) -> Optional[CollectResult]:
    """Runs (or resumes) a collection into ``out_dir``; returns the dataset paths and summary.

    ``stop_after_chunks`` stops (returning ``None``) once that many chunks are complete and
    checkpointed in this call -- what a kill at that point leaves behind (used to test resume).
    Raises ``DirectoryInUse`` if another process is collecting into ``out_dir`` and
    ``Interrupted`` after SIGINT (Ctrl-C), once the chunk under way is checkpointed
    (``guards``).
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CollectConfigError(f"--out_dir {out_dir} is a file, not a directory")
    with guards.directory_lock(out_dir, "collecting"):
        return _collect(config, out_dir, log, stop_after_chunks)


def _collect(config: CollectConfig, out_dir: str, log: Callable[[str], None],
             stop_after_chunks: Optional[int]) -> Optional[CollectResult]:
    check_config_file(config, out_dir)
    finished = completed(config, out_dir)
    if finished is not None:
        log(f"{out_dir}: collection already complete; reusing its datasets")
        return finished
    family = config.make_family()
    tasks, roles = select_tasks(config)
    is_test, is_val = roles == "test", roles == "val"
    progs = programs_for(config)
    num_tasks, k_total = tasks.num_tasks, config.num_checkpoints
    ckpt = Checkpointer(os.path.join(out_dir, "sac_checkpoints"))
    with guards.StopRequests() as stop:
        try:
            t0 = time.time()
            latest = ckpt.latest_step()
            if latest is not None:
                state = restore_state(ckpt, latest, progs, config, tasks)
                log(f"resumed from {ckpt.directory} at checkpoint {latest}/{k_total}")
            else:
                state = fresh_state(progs, config, tasks)
                check_finite(progs, config, tasks, state, {}, 0, out_dir)
                ckpt.save(0, state)
                log(f"{family.name}: SAC on {num_tasks} tasks, {k_total} checkpoints x "
                    f"{config.env_steps_per_checkpoint} env steps per task")
            done_chunks = int(state.chunk)
            run_start, ran = time.time(), 0
            for k in range(done_chunks + 1, k_total + 1):
                sac_state, bank, metrics = progs.chunk(state.sac, state.bank, tasks, k)
                ret = metrics["episode_return"]
                state = CollectState(sac=sac_state, bank=bank, curve=state.curve.at[k].set(ret),
                                     chunk=jnp.asarray(k, jnp.int32))
                check_finite(progs, config, tasks, state, metrics, k, out_dir)
                ckpt.save(k, state)
                ran += 1
                ret = np.asarray(ret)
                elapsed = time.time() - run_start
                sps = ran * config.env_steps_per_checkpoint * num_tasks / elapsed
                eta = elapsed / ran * (k_total - k)
                finite = ret[np.isfinite(ret)]
                rets = (f"train return mean {finite.mean():.3f} [min {finite.min():.3f}, max "
                        f"{finite.max():.3f}] ({finite.size}/{num_tasks} tasks ended episodes)"
                        if finite.size else "no training episode ended in this chunk")
                log(f"checkpoint {k}/{k_total} | {k * config.env_steps_per_checkpoint} env "
                    f"steps/task | {rets} | {sps:,.0f} env steps/s | {elapsed:.0f}s, ETA "
                    f"{eta:.0f}s")
                write_progress(out_dir, config, np.asarray(state.curve), k)
                if stop.requested is not None:
                    raise Interrupted(
                        f"collection interrupted ({signal.Signals(stop.requested).name}) after "
                        f"checkpoint {k}/{k_total}, kept in {out_dir}: rerun the same command to "
                        "resume")
                if stop_after_chunks is not None and ran >= stop_after_chunks and k < k_total:
                    return None
        finally:
            ckpt.close()

    # Every checkpoint on every task (the learning curves; target returns choose from them).
    t_eval = time.time()
    evaluated = np.asarray(progs.evaluate(state.bank, tasks, evaluation_keys(config, num_tasks)),
                           np.float64)
    best = evaluated.max(axis=1)
    log(f"evaluated every checkpoint on every task ({time.time() - t_eval:.0f}s): best "
        f"checkpoint's return {best.mean():.2f} +- {best.std(ddof=1):.2f} over tasks (min "
        f"{best.min():.2f}); mean return per checkpoint: "
        + " ".join(f"{x:.1f}" for x in evaluated.mean(axis=0)))
    selection = config.checkpoint_ids(evaluated, num_tasks)
    paths, datasets = {}, {}
    for split, total in (("train", config.transitions_per_task),
                         ("ood", config.ood_transitions_per_task)):
        if not total:
            continue
        idx = selection[split]                                   # [T, C]
        steps = total // (idx.shape[1] * config.rollout_envs)
        if steps < family.horizon:
            log(f"note: {split} rollouts are {steps} steps per environment, shorter than the "
                f"horizon ({family.horizon}); their episodes are cut by the collection budget")
        params = progs.task_params(state.bank, idx)
        base = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1 if split == "train" else 2)
        keys = jax.vmap(lambda t, row: jax.vmap(lambda c: jax.random.fold_in(
            jax.random.fold_in(base, t), c))(row))(jnp.arange(num_tasks), jnp.asarray(idx))
        tr = progs.rollout(params, tasks, keys, steps)
        provenance = {"collect_config": config.to_json(),
                      "policy": "deterministic" if config.deterministic else "stochastic"}
        if config.train_returns is not None:
            provenance["checkpoint_selection"] = {
                "evaluated_returns": evaluated.tolist(), "checkpoints": idx.tolist(),
                "targets": list(config.train_returns if split == "train"
                                else config.ood_returns)}
        ds = dataset_lib.from_rollouts(
            family, tasks, is_test, tr, idx, split, provenance=provenance, is_val=is_val,
            family_config=dict(config.family_config),
            checkpoint_env_steps=config.env_steps_per_checkpoint,
            warmup_env_steps=config.online.warmup_iterations * config.online.num_envs)
        paths[split] = dataset_lib.save(ds, os.path.join(out_dir, f"{split}.npz"))
        datasets[split] = ds
        which = (idx[0].tolist() if (idx == idx[:1]).all() else
                 "per task " + ", ".join(str(row.tolist()) for row in idx))
        log(f"wrote {paths[split]}: {num_tasks} tasks x {ds.transitions_per_task} transitions "
            f"from checkpoints {which}")
    summary = summary_of(config, tasks, roles, np.asarray(state.curve), evaluated, paths,
                       datasets, time.time() - t0)
    atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
    return CollectResult(train_path=paths["train"], ood_path=paths.get("ood"), summary=summary)
