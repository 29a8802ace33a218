"""Entropy-Modulated Policy Gradients (EMPG), arXiv 2509.09265.

Pure tensor functions, no state. The batch layout is step-level: ``(B, T)`` with B trajectories and
T agent steps per trajectory (one step = one model response = one action), left-aligned and padded;
``mask[b, t]`` is True for real steps. Every statistic (min/max of entropy, mean of the confidence
weight, final normalisation) is taken over the real steps of the whole batch, so the caller must pass
the global batch when it wants global statistics.

Padding may hold any value (garbage, inf, NaN): it is replaced with ``torch.where`` before any
arithmetic, never multiplied by a 0/1 mask, so it cannot leak into real steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["empg_factors", "empg_advantages", "score_norm_sq_expectation"]


def _check_step_batch(name: str, x: Tensor, mask: Tensor) -> None:
    """Raise ValueError unless ``x`` and ``mask`` are both (B, T) with equal shapes and x is floating."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    if x.shape != mask.shape:
        raise ValueError(f"{name} shape {tuple(x.shape)} does not match mask shape {tuple(mask.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def _masked_min_max(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of x over True positions of mask (0-d tensors). Caller guarantees mask.any()."""
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    return torch.where(mask, x, inf).amin(), torch.where(mask, x, -inf).amax()


def empg_factors(
    entropy: Tensor,
    mask: Tensor,
    *,
    k: float = 1.0,
    k_future: float = 1.0,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """Self-calibrating confidence weight g and future-clarity bonus f_next of EMPG.

    Args:
        entropy: float (B, T). Step entropy H[b, t] = mean over step t's response tokens of the
            token entropy. Values at padded positions are ignored (may be anything).
        mask: bool (B, T). True for real steps. Non-bool masks are read as ``mask != 0``.
        k: temperature of the confidence weight g.
        k_future: temperature of the future-clarity bonus.
        eps: added to (max - min) so constant entropy gives H_norm = 0 instead of 0/0.

    Returns:
        g: (B, T), dtype of ``entropy``. g = exp(-k H_norm) / mean_real(exp(-k H_norm)), with
            H_norm = (H - min) / (max - min + eps) over real steps. Mean of g over real steps is 1.
        f_next: (B, T), dtype of ``entropy``. f_next[b, t] = exp(-k_future H_norm[b, t+1]) when steps
            t and t+1 of trajectory b are both real, else 0 — the last real step of a trajectory has
            no next step and gets no bonus.
        Both are exactly 0 where mask is False; both are all-zero when there is no real step.

    Raises:
        ValueError: if entropy and mask are not equal (B, T) shapes or entropy is not floating.
    """
    _check_step_batch("entropy", entropy, mask)
    mask = mask if mask.dtype == torch.bool else mask != 0
    zeros = torch.zeros_like(entropy)
    if not bool(mask.any()):
        # Nothing to normalise over; zeros keep downstream sums finite.
        return zeros, zeros.clone()

    h = torch.where(mask, entropy, zeros)  # scrub padding before it meets any arithmetic
    h_min, h_max = _masked_min_max(h, mask)
    # Constant entropy: numerator and denominator-minus-eps are both 0, so H_norm = 0 and g = 1.
    h_norm = torch.where(mask, (h - h_min) / (h_max - h_min + eps), zeros)

    conf = torch.where(mask, torch.exp(-k * h_norm), zeros)
    n_real = mask.sum().to(entropy.dtype)
    # Dividing by the batch mean keeps the average update size unchanged (mean of g is exactly 1).
    g = torch.where(mask, conf / (conf.sum() / n_real), zeros)

    # Bonus for step t is the clarity of step t+1; shift left and require both steps to be real.
    has_next = torch.zeros_like(mask)
    has_next[:, :-1] = mask[:, :-1] & mask[:, 1:]
    next_clarity = torch.zeros_like(entropy)
    next_clarity[:, :-1] = torch.exp(-k_future * h_norm[:, 1:])
    f_next = torch.where(has_next, next_clarity, zeros)
    return g, f_next


def empg_advantages(
    advantages: Tensor,
    entropy: Tensor,
    mask: Tensor,
    *,
    k: float = 1.0,
    k_future: float = 1.0,
    zeta: float = 0.1,
    eps: float = 1e-8,
    normalize: bool = True,
) -> Tensor:
    """EMPG-modulated step advantages A_mod = g(H_t) A_t + zeta f(H_{t+1}), optionally standardised.

    Args:
        advantages: float (B, T). Base advantage of each step (GRPO, DAPO, ...; for outcome-only
            estimators every real step of a trajectory carries the same value). Padding ignored.
        entropy: float (B, T). Step entropies, see :func:`empg_factors`.
        mask: bool (B, T). True for real steps.
        k, k_future, eps: see :func:`empg_factors`; eps is also the std guard of the normalisation.
        zeta: weight of the future-clarity bonus.
        normalize: if True, return (A_mod - mean) / (std + eps) with mean and population std
            (unbiased=False) over the real steps of the batch.

    Returns:
        float (B, T), dtype of ``advantages``; exactly 0 where mask is False, all-zero when no step is
        real. Treat the result as a constant (detach inputs) when using it in a loss.

    Raises:
        ValueError: if advantages, entropy and mask are not the same (B, T) shape.
    """
    _check_step_batch("advantages", advantages, mask)
    _check_step_batch("entropy", entropy, mask)
    mask = mask if mask.dtype == torch.bool else mask != 0
    zeros = torch.zeros_like(advantages)
    if not bool(mask.any()):
        return zeros

    g, f_next = empg_factors(entropy, mask, k=k, k_future=k_future, eps=eps)
    g, f_next = g.to(advantages.dtype), f_next.to(advantages.dtype)
    a = torch.where(mask, advantages, zeros)
    a_mod = torch.where(mask, g * a + zeta * f_next, zeros)
    if not normalize:
        return a_mod

    n_real = mask.sum().to(advantages.dtype)
    mean = a_mod.sum() / n_real
    centred = torch.where(mask, a_mod - mean, zeros)
    std = torch.sqrt((centred * centred).sum() / n_real)  # population std, as in the paper's code
    return torch.where(mask, centred / (std + eps), zeros)


def score_norm_sq_expectation(logits: Tensor) -> Tensor:
    """Proposition 1: E_{a~softmax(z)} ||d log softmax(z)_a / dz||^2 = 1 - sum_a p_a^2.

    The score w.r.t. logits is e_a - p, whose squared norm is 1 - 2 p_a + sum p^2; averaging under p
    gives 1 - sum p^2 (= 1 - exp(-Renyi-2 entropy)).

    Args:
        logits: float (..., V) with V >= 1.

    Returns:
        float (...), dtype of ``logits``; values in [0, 1 - 1/V].

    Raises:
        ValueError: if logits is 0-d, has an empty last dim, or is not floating.
    """
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must be (..., V) with V >= 1, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating tensor, got dtype {logits.dtype}")
    p = torch.softmax(logits, dim=-1)
    return 1.0 - (p * p).sum(dim=-1)
