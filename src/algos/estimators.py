"""Registry of base advantage estimators, selected by name from ``algo.estimator``.

Each entry maps (returns (B,), mask (B, T), group_ids (B,), **options) -> advantages (B, T); EMPG
is applied on top of whichever one is chosen (``src/algos/empg.py``)."""
from __future__ import annotations

from enum import Enum
from typing import Any, Callable, Dict

import torch

from src.algos.advantages import grpo_advantages, rloo_advantages


class Estimator(str, Enum):
    GRPO = "grpo"
    RLOO = "rloo"


_FUNCTIONS: Dict[Estimator, Callable[..., torch.Tensor]] = {
    Estimator.GRPO: grpo_advantages,
    Estimator.RLOO: rloo_advantages,
}


def estimator_function(name: str) -> Callable[..., torch.Tensor]:
    try:
        return _FUNCTIONS[Estimator(name)]
    except ValueError:
        allowed = ", ".join(e.value for e in Estimator)
        raise ValueError(f"algo.estimator={name!r} is not a known estimator; allowed values: {allowed}") from None


def compute_base_advantages(
    name: str, returns: torch.Tensor, mask: torch.Tensor, group_ids: torch.Tensor, **options: Any
) -> torch.Tensor:
    """Dispatch to the estimator ``name`` with its own options (e.g. ``norm_by_std`` for GRPO)."""
    return estimator_function(name)(returns, mask, group_ids, **options)
