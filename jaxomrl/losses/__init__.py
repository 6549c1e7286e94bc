"""Standalone, jittable loss functions. Each documents its shapes and the equation it implements."""
from jaxomrl.losses.sac import (critic_loss, soft_q_target, sac_actor_loss, temperature_loss)

__all__ = ["critic_loss", "soft_q_target", "sac_actor_loss", "temperature_loss"]
