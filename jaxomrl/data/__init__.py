"""Offline data: the multi-task dataset format, jittable samplers, replay buffers, collection."""
from jaxomrl.data.dataset import DatasetError, MultiTaskDataset, load, save
from jaxomrl.data.replay import ReplayBuffer, replay_add, replay_init, replay_sample
from jaxomrl.data.sampler import (TaskData, sample_episodes, sample_indices, sample_task_subset,
                                  sample_transitions, sample_windows, take)

__all__ = ["DatasetError", "MultiTaskDataset", "load", "save", "ReplayBuffer", "replay_add",
           "replay_init", "replay_sample", "TaskData", "sample_task_subset", "sample_transitions",
           "sample_windows", "sample_episodes", "sample_indices", "take"]
