"""Outcome-based group advantage estimators (GRPO / Dr.GRPO, RLOO) at trajectory level.

Layout: B trajectories, each with one scalar episode return, and a step mask (B, T), left-aligned and
padded. Group statistics are over *trajectories* (each counts once). This differs from verl-agent's
``compute_mean_std_cross_steps=True``, which takes statistics over step rows so long trajectories weigh
more; to reproduce that, expand each trajectory into its steps before calling these functions.

A trajectory with no real step (an all-padding row) is not a group member: it neither contributes to
its group's statistics nor receives an advantage.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["broadcast_to_steps", "grpo_advantages", "rloo_advantages"]


def _check_inputs(returns: Tensor, mask: Tensor, group_ids: Tensor | None = None) -> None:
    """Raise ValueError unless returns is float (B,), mask is (B, T) and group_ids is integer (B,)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    if returns.dim() != 1 or returns.shape[0] != mask.shape[0]:
        raise ValueError(
            f"returns must be (B,) with B = mask.shape[0]; got returns {tuple(returns.shape)}, "
            f"mask {tuple(mask.shape)}"
        )
    if not returns.is_floating_point():
        raise ValueError(f"returns must be a floating tensor, got dtype {returns.dtype}")
    if group_ids is not None:
        if group_ids.shape != returns.shape:
            raise ValueError(
                f"group_ids shape {tuple(group_ids.shape)} does not match "
                f"returns shape {tuple(returns.shape)}"
            )
        if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
            raise ValueError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")


def broadcast_to_steps(values: Tensor, mask: Tensor) -> Tensor:
    """Copy one value per trajectory onto each of its real steps.

    Args:
        values: float (B,).
        mask: bool (B, T), True for real steps (non-bool read as ``mask != 0``).

    Returns:
        (B, T), dtype of ``values``: out[b, t] = values[b] where mask[b, t], else exactly 0.

    Raises:
        ValueError: if values is not (B,) with B = mask.shape[0], or mask is not 2-D.
    """
    _check_inputs(values, mask)
    mask = mask if mask.dtype == torch.bool else mask != 0
    return torch.where(mask, values.unsqueeze(1).expand(mask.shape), torch.zeros((), dtype=values.dtype))


def _group_stats(
    returns: Tensor, member: Tensor, group_ids: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-trajectory view of its group's count, sum and sum of squared deviations.

    Args:
        returns: float (B,). member: bool (B,), which trajectories count. group_ids: integer (B,).

    Returns:
        (count, total, mean, sq_dev) each float (B,) gathered back to trajectories; count/total/mean
        are of the trajectory's group over members only, sq_dev = sum over members of (R - mean)^2.
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    w = member.to(returns.dtype)
    r = torch.where(member, returns, torch.zeros_like(returns))  # non-members may hold garbage
    count = torch.zeros(n_groups, dtype=returns.dtype, device=returns.device).index_add_(0, inverse, w)
    total = torch.zeros_like(count).index_add_(0, inverse, r)
    mean = total / count.clamp_min(1.0)
    dev = torch.where(member, r - mean[inverse], torch.zeros_like(r))
    sq_dev = torch.zeros_like(count).index_add_(0, inverse, dev * dev)
    return count[inverse], total[inverse], mean[inverse], sq_dev[inverse]


def grpo_advantages(
    returns: Tensor,
    mask: Tensor,
    group_ids: Tensor,
    *,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO group-normalised advantage A_b = (R_b - mean_g) / (std_g + eps), broadcast to steps.

    std_g is the *unbiased* (Bessel-corrected, n-1) standard deviation, matching ``torch.std``'s
    default as used by GRPO implementations (verl included). A group whose returns are all equal has
    std 0 and gets A = 0 / eps = 0.

    A singleton group (one real trajectory) gets advantage 0: there is no other rollout to form a
    baseline from, so no learning signal is claimed. (verl-agent instead uses mean 0, std 1 for a
    one-row group, i.e. A = R; we deliberately do not.)

    Args:
        returns: float (B,), episode return of each trajectory.
        mask: bool (B, T), True for real steps.
        group_ids: integer (B,); trajectories sharing an id come from the same reset/prompt.
        norm_by_std: False gives Dr.GRPO (A = R - mean_g, no division).
        eps: std guard.

    Returns:
        float (B, T), dtype of ``returns``: A_b on every real step of trajectory b, exactly 0 at padding.

    Raises:
        ValueError: on shape/dtype mismatch between returns (B,), mask (B, T) and group_ids (B,).
    """
    _check_inputs(returns, mask, group_ids)
    mask = mask if mask.dtype == torch.bool else mask != 0
    member = mask.any(dim=1)
    count, _, mean, sq_dev = _group_stats(returns, member, group_ids)
    adv = returns - mean
    if norm_by_std:
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        adv = adv / (std + eps)
    adv = torch.where(member & (count > 1), adv, torch.zeros_like(adv))
    return broadcast_to_steps(adv, mask)


def rloo_advantages(returns: Tensor, mask: Tensor, group_ids: Tensor) -> Tensor:
    """REINFORCE leave-one-out advantage A_b = R_b - mean of the other group members' returns.

    Equivalent to n/(n-1) * (R_b - mean_g). A singleton group gets 0 (no other member to compare with).

    Args:
        returns: float (B,), episode return of each trajectory.
        mask: bool (B, T), True for real steps.
        group_ids: integer (B,).

    Returns:
        float (B, T), dtype of ``returns``: A_b on every real step of trajectory b, exactly 0 at padding.

    Raises:
        ValueError: on shape/dtype mismatch between returns (B,), mask (B, T) and group_ids (B,).
    """
    _check_inputs(returns, mask, group_ids)
    mask = mask if mask.dtype == torch.bool else mask != 0
    member = mask.any(dim=1)
    count, total, _, _ = _group_stats(returns, member, group_ids)
    r = torch.where(member, returns, torch.zeros_like(returns))
    others_mean = (total - r) / (count - 1.0).clamp_min(1.0)
    adv = torch.where(member & (count > 1), r - others_mean, torch.zeros_like(r))
    return broadcast_to_steps(adv, mask)


def informative_groups(returns: Tensor, group_ids: Tensor, atol: float = 1e-8) -> Tensor:
    """DAPO's dynamic-sampling filter: which trajectories belong to a group whose returns differ.

    A group whose members all got the same return (all failed, or all succeeded) has zero
    group-relative advantage everywhere, so it only dilutes a mini-batch (and, under EMPG's final
    normalisation, lets the entropy terms alone set the update).

    Args:
        returns: float (B,) episode returns.
        group_ids: long (B,) group of each trajectory.
        atol: returns closer than this count as equal.

    Returns:
        bool (B,): True for trajectories of informative groups.
    """
    if returns.dim() != 1 or group_ids.shape != returns.shape:
        raise ValueError(f"returns (B,) and group_ids (B,) expected, got {tuple(returns.shape)} and "
                         f"{tuple(group_ids.shape)}")
    keep = torch.zeros_like(returns, dtype=torch.bool)
    for gid in torch.unique(group_ids):
        members = group_ids == gid
        values = returns[members]
        keep[members] = bool((values.max() - values.min()) > atol)
    return keep
