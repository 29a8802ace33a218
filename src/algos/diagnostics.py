"""Proposition 1's diagnostic: how gradient size tracks step entropy, before and after EMPG.

For a softmax over logits z and a sampled token a, the gradient of log pi(a) w.r.t. z is e_a - p,
so its squared norm is 1 - 2 p_a + sum p^2, whose expectation under pi is 1 - sum p^2 (EMPG's
Proposition 1, :func:`src.algos.empg.score_norm_sq_expectation`). The policy-gradient loss scales
that score by the step's advantage, so a step's gradient size w.r.t. its logits is |A_t| times the
score norm: the quantities below are measured per agent step from the training forward pass.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

from src.algos.losses import masked_mean

__all__ = ["pearson_corr", "step_score_norms", "token_score_stats"]


@torch.no_grad()
def token_score_stats(logits: Tensor, targets: Tensor, temperature: float = 1.0,
                      chunk_rows: int = 8) -> Dict[str, Tensor]:
    """Per-token score statistics of softmax(logits / temperature), a few rows at a time (the
    vocabulary-sized probabilities of a whole mini-batch are never held at once).

    Args:
        logits: float (N, R, V). targets: long (N, R), the sampled tokens.

    Returns:
        ``sampled_sq`` (N, R): ||e_a - p||^2 = 1 - 2 p_a + sum p^2 at the sampled token a;
        ``expected_sq`` (N, R): 1 - sum p^2, its expectation over a ~ p.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits (N, R, V) and targets (N, R) expected, got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    sampled, expected = [], []
    for start in range(0, logits.shape[0], chunk_rows):
        chunk = logits[start:start + chunk_rows]
        p = torch.softmax(chunk.to(torch.promote_types(chunk.dtype, torch.float32)) / temperature, dim=-1)
        sum_sq = (p * p).sum(-1)
        p_a = p.gather(-1, targets[start:start + chunk_rows].unsqueeze(-1)).squeeze(-1)
        sampled.append(1.0 - 2.0 * p_a + sum_sq)
        expected.append(1.0 - sum_sq)
    return {"sampled_sq": torch.cat(sampled), "expected_sq": torch.cat(expected)}


def step_score_norms(stats: Dict[str, Tensor], mask: Tensor) -> Dict[str, Tensor]:
    """Per-step (row) means over real tokens of :func:`token_score_stats`' outputs, plus the mean
    score norm ``sampled_norm`` (mean of sqrt(sampled_sq)), each (N,); 0 for a row without tokens."""
    return {"sampled_sq": masked_mean(stats["sampled_sq"], mask, dim=1),
            "expected_sq": masked_mean(stats["expected_sq"], mask, dim=1),
            "sampled_norm": masked_mean(stats["sampled_sq"].clamp_min(0.0).sqrt(), mask, dim=1)}


def pearson_corr(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of two (N,) float tensors; NaN when N < 2 or either is constant (the
    correlation is undefined there, and a made-up 0 would read as a measurement)."""
    if x.dim() != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be equal (N,) tensors, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    xc, yc = x - x.mean(), y - y.mean()
    denom = torch.sqrt((xc * xc).sum() * (yc * yc).sum())
    if x.numel() < 2 or float(denom) == 0.0:
        return torch.tensor(float("nan"))
    return ((xc * yc).sum() / denom).float()
