"""Algorithm core: EMPG advantage modulation, group advantage estimators, policy-gradient losses."""

from src.algos.advantages import broadcast_to_steps, grpo_advantages, rloo_advantages
from src.algos.empg import empg_advantages, empg_factors, score_norm_sq_expectation
from src.algos.losses import (
    AGG_MODES,
    KL_KINDS,
    aggregate_loss,
    entropy_from_logits,
    kl_penalty,
    masked_mean,
    policy_gradient_loss,
)

__all__ = [
    "AGG_MODES",
    "KL_KINDS",
    "aggregate_loss",
    "broadcast_to_steps",
    "empg_advantages",
    "empg_factors",
    "entropy_from_logits",
    "grpo_advantages",
    "kl_penalty",
    "masked_mean",
    "policy_gradient_loss",
    "rloo_advantages",
    "score_norm_sq_expectation",
]
