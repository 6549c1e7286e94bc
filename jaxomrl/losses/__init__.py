"""Standalone, jittable loss functions. Each documents its shapes and the equation it implements.

* ``sac``: soft Q target, critic, actor and temperature losses; SAC+BC (TD3+BC-style), BC and
  CQL(H)'s penalty; the objectives they compose into (soft Bellman, conservative, SAC / SAC+BC /
  BC actors) for ``jaxomrl.learners.sac``.
* ``iql``: implicit Q-learning's expectile value loss, value target and advantage-weighted
  regression.
* ``contrastive``: InfoNCE, R2PGO's similarity weights and weighted negatives (eq. 4-5), FOCAL's
  distance metric, CORRO's noise negatives, CSRO's CLUB bound, nearest-centroid task accuracy.
* ``vae``: R2PGO's ELBO (eq. 2-3): trajectory reconstruction and sequential KL; CORRO's
  conditional VAE of (s', r) given (s, a), its generative negatives' model.
* ``dynamics``: Gaussian NLL with soft-bounded log-variance (the model ensembles).
* ``adversarial``: ReDA's InfoNCE score R(z) and adversarial-policy reward (eq. 5-6).
* ``sequence``: the decision transformer's masked action regression (Prompt-DT).
ReDA's relative representation metric d(phi) is in ``jaxomrl.eval.metrics``.
"""
from jaxomrl.losses.adversarial import adversarial_reward, infonce_score
from jaxomrl.losses.contrastive import (centroid_accuracy, club_upper_bound, corro_negatives,
                                        focal_distance_loss, info_nce, sample_negative_tasks,
                                        similarity_weights, weighted_info_nce)
from jaxomrl.losses.iql import awr_actor_loss, expectile_loss, value_loss, value_target
from jaxomrl.losses.sac import (bc_actor_objective, bc_loss, conservative_objective,
                                cql_penalty, critic_loss, sac_actor_loss, sac_actor_objective,
                                sac_bc_actor_loss, sac_bc_actor_objective, soft_bellman_objective,
                                soft_q_target, temperature_loss)
from jaxomrl.losses.dynamics import ensemble_member_loss, gaussian_nll, soft_bound_logvar
from jaxomrl.losses.sequence import masked_action_mse
from jaxomrl.losses.vae import cvae_loss, gaussian_kl, sequential_kl, vae_loss

__all__ = ["soft_bellman_objective", "conservative_objective", "sac_actor_objective",
           "sac_bc_actor_objective", "bc_actor_objective", "cql_penalty", "bc_loss", "sac_bc_actor_loss", "critic_loss", "soft_q_target", "sac_actor_loss",
           "temperature_loss", "info_nce", "similarity_weights", "sample_negative_tasks",
           "weighted_info_nce", "focal_distance_loss", "corro_negatives", "centroid_accuracy",
           "gaussian_kl", "sequential_kl", "vae_loss", "cvae_loss", "gaussian_nll", "soft_bound_logvar",
           "ensemble_member_loss", "infonce_score", "adversarial_reward", "expectile_loss",
           "value_loss", "value_target", "awr_actor_loss", "club_upper_bound",
           "masked_action_mse"]
