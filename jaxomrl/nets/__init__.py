"""Flax networks: MLPs, actors and critics, task encoders and decoders, the prompt decision
transformer."""
from jaxomrl.nets.actor_critic import (Critic, TanhGaussianActor, tanh_gaussian_mode,
                                       tanh_gaussian_sample)
from jaxomrl.nets.encoders import (GRUEncoder, RewardDecoder, StateDecoder,
                                   TransformerContextEncoder, TransitionCVAE,
                                   TransitionSetEncoder, transition_features)
from jaxomrl.nets.decision_transformer import PromptDecisionTransformer
from jaxomrl.nets.mlp import MLP

__all__ = ["MLP", "Critic", "TanhGaussianActor",
           "tanh_gaussian_sample", "tanh_gaussian_mode", "GRUEncoder", "RewardDecoder",
           "StateDecoder", "TransformerContextEncoder", "TransitionCVAE", "TransitionSetEncoder",
           "transition_features", "PromptDecisionTransformer"]
