"""Advantage estimators: outcome-based group estimators (GRPO / Dr.GRPO, RLOO) at trajectory level,
and step-level ones (discounted returns, REINFORCE++, GiGPO, GAE) plus DAPO's overlong penalty.

Layout: B trajectories, each with one scalar episode return, and a step mask (B, T), left-aligned and
padded. Group statistics are over *trajectories* (each counts once). This differs from verl-agent's
``compute_mean_std_cross_steps=True``, which takes statistics over step rows so long trajectories weigh
more; to reproduce that, expand each trajectory into its steps before calling these functions.

A trajectory with no real step (an all-padding row) is not a group member: it neither contributes to
its group's statistics nor receives an advantage.

Row penalties (verl-agent's invalid-action penalty, DAPO's overlong punishment) belong to one step's
row, not to the trajectory: every estimator takes optional ``step_penalties`` p (B, T) and subtracts
p[b, t] from that row's own score only. For the outcome estimators a row's score is s[b, t] = R_b -
p[b, t], and the group statistics stay trajectory-level: trajectory b's rows enter with weight
1 / len_b, so each trajectory still counts once, and with no penalty the statistics are exactly those
of the returns R_b. For the step-level estimators p[b, t] is subtracted from step t's return-to-go
(or GAE advantage) only, undiscounted and not propagated to earlier steps, as verl-agent subtracts
it from GiGPO's ``step_rewards``.

The step-level functions take (B, T) step tensors laid out the same way: real steps of trajectory b are
columns 0..len_b-1 of row b, padding may hold anything (NaN, inf) and never reaches a real output, and
every output is exactly 0 at padding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "anchor_ids",
    "broadcast_to_steps",
    "discounted_returns",
    "gae_advantages",
    "gigpo_advantages",
    "grpo_advantages",
    "masked_whiten",
    "overlong_penalty",
    "reinforce_pp_advantages",
    "rloo_advantages",
    "shared_state_fraction",
    "step_group_ids",
]


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


def _row_scores(returns: Tensor, mask: Tensor, step_penalties: Tensor | None) -> Tensor:
    """Row scores s[b, t] = R_b - p[b, t] (B, T), 0 at padding; p = 0 when ``step_penalties`` is None."""
    zero = torch.zeros((), dtype=returns.dtype, device=returns.device)
    scores = returns.unsqueeze(1).expand(mask.shape)
    if step_penalties is not None:
        _check_step_tensor("step_penalties", step_penalties, mask)
        scores = scores - torch.where(mask, step_penalties.to(returns.dtype), zero)
    return torch.where(mask, scores, zero)


def _trajectory_weighted_stats(scores: Tensor, mask: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Group statistics of row scores where each trajectory counts once (its rows weigh 1 / len_b).

    Args:
        scores: float (B, T) row scores, 0 at padding. mask: bool (B, T). group_ids: integer (B,).

    Returns:
        (count, mean, sq_dev), each float (B,) gathered back to trajectories: the number of member
        trajectories in the group, the weighted mean of the group's row scores and the weighted sum of
        squared deviations (equal to count, mean and sum of (R_b - mean)^2 when rows are constant).
    """
    member = mask.any(dim=1)
    lengths = mask.sum(dim=1).to(scores.dtype).clamp_min(1.0)
    weight = torch.where(mask, 1.0 / lengths.unsqueeze(1), torch.zeros((), dtype=scores.dtype))
    traj_mean = (weight * scores).sum(dim=1)  # mean row score of each trajectory
    count, _, mean, _ = _group_stats(traj_mean, member, group_ids)
    dev = torch.where(mask, scores - mean.unsqueeze(1), torch.zeros((), dtype=scores.dtype))
    _, sq_dev, _, _ = _group_stats((weight * dev * dev).sum(dim=1), member, group_ids)  # group sums
    return count, mean, sq_dev


def grpo_advantages(
    returns: Tensor,
    mask: Tensor,
    group_ids: Tensor,
    *,
    step_penalties: Tensor | None = None,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GRPO group-normalised advantage A[b, t] = (s[b, t] - mean_g) / (std_g + eps), s = R_b - p[b, t].

    Without penalties every row of trajectory b has s = R_b and this is the textbook
    A_b = (R_b - mean_g) / (std_g + eps) broadcast to its steps. With penalties the statistics are
    the trajectory-weighted ones of the module docstring (each trajectory counts once).

    std_g is the *unbiased* (Bessel-corrected, n-1 over trajectories) standard deviation, matching
    ``torch.std``'s default as used by GRPO implementations (verl included). A group whose scores are
    all equal has std 0 and gets A = 0 / eps = 0.

    A singleton group (one real trajectory) gets advantage 0: there is no other rollout to form a
    baseline from, so no learning signal is claimed. (verl-agent instead uses mean 0, std 1 for a
    one-row group, i.e. A = R; we deliberately do not.)

    Args:
        returns: float (B,), episode return of each trajectory.
        mask: bool (B, T), True for real steps.
        group_ids: integer (B,); trajectories sharing an id come from the same reset/prompt.
        step_penalties: float (B, T) or None, subtracted from each row's own score (padding ignored).
        norm_by_std: False gives Dr.GRPO (A = s - mean_g, no division).
        eps: std guard.

    Returns:
        float (B, T), dtype of ``returns``: A on every real step, exactly 0 at padding.

    Raises:
        ValueError: on shape/dtype mismatch between returns (B,), mask (B, T), group_ids (B,) and
            step_penalties (B, T).
    """
    _check_inputs(returns, mask, group_ids)
    mask = mask if mask.dtype == torch.bool else mask != 0
    scores = _row_scores(returns, mask, step_penalties)
    count, mean, sq_dev = _trajectory_weighted_stats(scores, mask, group_ids)
    adv = scores - mean.unsqueeze(1)
    if norm_by_std:
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        adv = adv / (std.unsqueeze(1) + eps)
    keep = mask & (count > 1).unsqueeze(1)
    return torch.where(keep, adv, torch.zeros((), dtype=adv.dtype))


def rloo_advantages(returns: Tensor, mask: Tensor, group_ids: Tensor, *,
                    step_penalties: Tensor | None = None) -> Tensor:
    """REINFORCE leave-one-out advantage A[b, t] = s[b, t] - mean over the other group members b' of
    their mean row score, with s[b, t] = R_b - p[b, t].

    Without penalties this is R_b - mean of the other returns = n/(n-1) * (R_b - mean_g). A singleton
    group gets 0 (no other member to compare with).

    Args:
        returns: float (B,), episode return of each trajectory.
        mask: bool (B, T), True for real steps.
        group_ids: integer (B,).
        step_penalties: float (B, T) or None, subtracted from each row's own score.

    Returns:
        float (B, T), dtype of ``returns``: A on every real step, exactly 0 at padding.

    Raises:
        ValueError: on shape/dtype mismatch between returns (B,), mask (B, T), group_ids (B,) and
            step_penalties (B, T).
    """
    _check_inputs(returns, mask, group_ids)
    mask = mask if mask.dtype == torch.bool else mask != 0
    member = mask.any(dim=1)
    scores = _row_scores(returns, mask, step_penalties)
    lengths = mask.sum(dim=1).to(scores.dtype).clamp_min(1.0)
    traj_mean = scores.sum(dim=1) / lengths
    count, total, _, _ = _group_stats(traj_mean, member, group_ids)
    own = torch.where(member, traj_mean, torch.zeros_like(traj_mean))
    others_mean = (total - own) / (count - 1.0).clamp_min(1.0)
    adv = scores - others_mean.unsqueeze(1)
    keep = mask & (member & (count > 1)).unsqueeze(1)
    return torch.where(keep, adv, torch.zeros((), dtype=adv.dtype))


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


# ----------------------------------------------------------------------------------------------------
# Step-level estimators: B trajectories x T steps, real steps left-aligned, outputs 0 at padding
# ----------------------------------------------------------------------------------------------------

def _bool_mask(mask: Tensor) -> Tensor:
    """Raise ValueError unless mask is 2-D; return it as bool (non-bool read as ``mask != 0``)."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    return mask if mask.dtype == torch.bool else mask != 0


def _check_step_tensor(name: str, x: Tensor, mask: Tensor, *, integer: bool = False) -> None:
    """Raise ValueError unless x has mask's (B, T) shape and is floating (or integer, if ``integer``)."""
    if x.shape != mask.shape:
        raise ValueError(
            f"{name} must be (B, T) like mask; got {name} {tuple(x.shape)}, mask {tuple(mask.shape)}"
        )
    if integer:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor, got dtype {x.dtype}")
    elif not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {x.dtype}")


def _check_group_ids(group_ids: Tensor, mask: Tensor) -> None:
    """Raise ValueError unless group_ids is an integer (B,) tensor with B = mask.shape[0]."""
    if group_ids.dim() != 1 or group_ids.shape[0] != mask.shape[0]:
        raise ValueError(
            f"group_ids must be (B,) with B = mask.shape[0]; got group_ids {tuple(group_ids.shape)}, "
            f"mask {tuple(mask.shape)}"
        )
    if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")


def _check_left_aligned(mask: Tensor) -> None:
    """Raise ValueError if some row has a real step after a padding step (a recursion would cut there)."""
    if mask.shape[1] > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
        rows = torch.nonzero((mask[:, 1:] & ~mask[:, :-1]).any(dim=1)).flatten().tolist()
        raise ValueError(f"mask {tuple(mask.shape)} must be left-aligned (real steps first); rows {rows} are not")


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _minus_penalties(values: Tensor, mask: Tensor, step_penalties: Tensor | None) -> Tensor:
    """values - p on real steps (p = 0 when ``step_penalties`` is None); padding left as it is."""
    if step_penalties is None:
        return values
    _check_step_tensor("step_penalties", step_penalties, mask)
    return torch.where(mask, values - step_penalties.to(values.dtype), values)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Per-step discounted return-to-go R_t = r_t + gamma * R_{t+1} within each trajectory.

    The step after a trajectory's last real step contributes 0 (the episode ends there, truncated or
    not), so R at the last real step is its own reward.

    Args:
        rewards: float (B, T), per-step rewards; padding may hold anything.
        mask: bool (B, T), True for real steps, left-aligned (non-bool read as ``mask != 0``).
        gamma: discount in [0, 1].

    Returns:
        float (B, T), dtype of ``rewards``: R_t on real steps, exactly 0 at padding.

    Raises:
        ValueError: if mask is not 2-D or not left-aligned, rewards is not a float tensor of mask's
            shape, or gamma is outside [0, 1].
    """
    mask = _bool_mask(mask)
    _check_step_tensor("rewards", rewards, mask)
    _check_left_aligned(mask)
    _check_unit_interval("gamma", gamma)
    zero = torch.zeros((), dtype=rewards.dtype, device=rewards.device)
    r = torch.where(mask, rewards, zero)
    out = torch.zeros_like(r)
    running = torch.zeros(r.shape[0], dtype=r.dtype, device=r.device)
    for t in range(r.shape[1] - 1, -1, -1):
        # At padding the running return is reset to 0, so the last real step only sees its own reward.
        running = torch.where(mask[:, t], r[:, t] + gamma * running, zero)
        out[:, t] = running
    return out


def masked_whiten(values: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Whiten over all real entries of the batch: (x - mean) / sqrt(var + eps).

    mean and var are over the real entries only; var is *unbiased* (n - 1 denominator), as verl's
    ``masked_whiten``. With fewer than 2 real entries the variance is undefined (verl raises); we
    return the centred values x - mean instead, i.e. 0 for a single real entry and all zeros for none.

    Args:
        values: float (B, T); padding may hold anything.
        mask: bool (B, T), True for real entries (non-bool read as ``mask != 0``).
        eps: variance guard.

    Returns:
        float (B, T), dtype of ``values``, exactly 0 at padding.

    Raises:
        ValueError: if mask is not 2-D or values is not a float tensor of mask's shape.
    """
    mask = _bool_mask(mask)
    _check_step_tensor("values", values, mask)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    x = torch.where(mask, values, zero)
    n = mask.sum().to(values.dtype)
    mean = x.sum() / n.clamp_min(1.0)
    centred = torch.where(mask, x - mean, zero)
    var = (centred * centred).sum() / (n - 1.0).clamp_min(1.0)
    whitened = centred * torch.rsqrt(var + eps)
    return torch.where(n >= 2, whitened, centred)


def reinforce_pp_advantages(step_rewards: Tensor, mask: Tensor, *, step_penalties: Tensor | None = None,
                            gamma: float = 1.0, eps: float = 1e-8) -> Tensor:
    """REINFORCE++ advantages: discounted step returns whitened over the whole batch.

    A_t = whiten(R_t - p_t) with R_t = r_t + gamma * R_{t+1} (``discounted_returns``), p_t the row's
    own penalty (``step_penalties``, not discounted into earlier steps), and the whitening over
    every real step of the batch (``masked_whiten``: global batch normalisation, unbiased variance, no
    per-group baseline). REINFORCE++ puts the KL penalty into the reward; that shaping happens *before*
    this call: the caller subtracts beta * KL_t from ``step_rewards``.

    Args:
        step_rewards: float (B, T), per-step rewards (already KL-shaped); padding may hold anything.
        mask: bool (B, T), True for real steps, left-aligned.
        step_penalties: float (B, T) or None, row penalties.
        gamma: discount in [0, 1].
        eps: variance guard of the whitening.

    Returns:
        float (B, T), dtype of ``step_rewards``, exactly 0 at padding. With at least 2 real steps the
        real entries have mean 0 and unbiased std sqrt(var / (var + eps)) ~= 1; with fewer they are 0.

    Raises:
        ValueError: as ``discounted_returns`` (shape, dtype, alignment, gamma outside [0, 1]).
    """
    mask = _bool_mask(mask)
    returns = _minus_penalties(discounted_returns(step_rewards, mask, gamma), mask, step_penalties)
    return masked_whiten(returns, mask, eps=eps)


def anchor_ids(observations: Sequence[str]) -> Tensor:
    """A stable 63-bit id per observation string (GiGPO's anchor state key).

    id = the first 8 bytes of BLAKE2b(utf-8 text, digest_size=8) read big-endian, masked to 63 bits so
    it fits a non-negative int64. Unlike Python's ``hash()`` this does not depend on the process,
    ``PYTHONHASHSEED`` or the machine, so ids can be computed in rollout workers and compared anywhere.
    Equal strings get equal ids; distinct strings collide with probability ~ n^2 / 2^64 (negligible).
    For (B, T) anchors hash the flattened observations and ``reshape(B, T)``.

    Args:
        observations: sequence of N strings (a bare ``str`` is refused, not split into characters).

    Returns:
        torch.long (N,), every entry in [0, 2^63).

    Raises:
        TypeError: if observations is a bare string or an element is not a string.
    """
    if isinstance(observations, str):
        raise TypeError("anchor_ids expects a sequence of strings, got a single str")
    mask63 = (1 << 63) - 1
    ids = []
    for i, obs in enumerate(observations):
        if not isinstance(obs, str):
            raise TypeError(f"observations[{i}] must be a str, got {type(obs).__name__}")
        digest = hashlib.blake2b(obs.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        ids.append(int.from_bytes(digest, "big") & mask63)
    return torch.tensor(ids, dtype=torch.long)


def step_group_ids(group_ids: Tensor, anchors: Tensor, mask: Tensor) -> Tensor:
    """GiGPO's step groups: real steps of the same group that answered the same anchor state.

    Two real steps share a step group iff their trajectories share ``group_ids`` and their anchors are
    equal, whatever their step indices (a state revisited later, or reached by another rollout at
    another step, joins the same group). An equal anchor in a different group is a different step group.

    Args:
        group_ids: integer (B,), the trajectory's group (same task / reset).
        anchors: integer (B, T), e.g. ``anchor_ids`` of each step's observation; padding may hold anything.
        mask: bool (B, T), True for real steps (non-bool read as ``mask != 0``); need not be left-aligned.

    Returns:
        torch.long (B, T): dense step-group ids 0..K-1 on real steps, numbered by first appearance when
        scanning rows b then columns t; -1 at padding.

    Raises:
        ValueError: if mask is not 2-D, group_ids is not integer (B,) or anchors not integer (B, T).
    """
    mask = _bool_mask(mask)
    _check_group_ids(group_ids, mask)
    _check_step_tensor("anchors", anchors, mask, integer=True)
    out = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    n = int(mask.sum())
    if n == 0:
        return out
    # Real steps in row-major order (b then t), each keyed by (group, anchor).
    keys = torch.stack(
        [group_ids.to(torch.long).unsqueeze(1).expand(mask.shape)[mask], anchors.to(torch.long)[mask]], dim=1
    )
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)  # ids in sorted-key order
    k = int(inverse.max()) + 1
    position = torch.arange(n, device=mask.device)
    first = torch.full((k,), n, dtype=torch.long, device=mask.device).scatter_reduce_(
        0, inverse, position, reduce="amin"
    )
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(k, device=mask.device)  # sorted-key id -> first-appearance id
    out[mask] = rank[inverse]
    return out


def shared_state_fraction(group_ids: Tensor, anchors: Tensor, mask: Tensor) -> float:
    """The fraction of real steps whose step group (``step_group_ids``) holds at least one other step.

    A step alone in its step group gets no step-level comparison from GiGPO (its step advantage is 0), so
    this is how much of a batch GiGPO's second level reaches; 0.0 for a batch without real steps.
    Shapes as ``step_group_ids``.
    """
    ids = step_group_ids(group_ids, anchors, mask)
    real = ids[ids >= 0]
    if real.numel() == 0:
        return 0.0
    sizes = torch.bincount(real)
    return (sizes[real] > 1).double().mean().item()


def gigpo_advantages(
    step_rewards: Tensor,
    mask: Tensor,
    group_ids: Tensor,
    anchors: Tensor,
    *,
    step_penalties: Tensor | None = None,
    gamma: float = 0.95,
    step_weight: float = 1.0,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """GiGPO (group-in-group) advantages: episode-level GRPO plus a step-level anchor-state term.

    A = A_episode + step_weight * A_step, where

    * A_episode = ``grpo_advantages`` of the episode returns (sum of a trajectory's real step rewards)
      less each row's penalty, within ``group_ids``, statistics over trajectories (verl-agent takes
      them over step rows); a singleton episode group gets 0.
    * A_step: R_t = ``discounted_returns(step_rewards, mask, gamma)`` - p_t (the row's own penalty,
      undiscounted, as verl-agent subtracts it from ``step_rewards``), normalised within the step's
      step group (``step_group_ids``: same group and same anchor): (R_t - mean_k) / (std_k + eps) with
      the unbiased std when ``norm_by_std`` (verl-agent's ``mean_std_norm``), else R_t - mean_k
      (``mean_norm``). Each real step counts once in its step group; a singleton step group gets 0.

    Args:
        step_rewards: float (B, T), per-step env rewards after any shaping; padding may hold anything.
        mask: bool (B, T), True for real steps, left-aligned.
        group_ids: integer (B,), trajectories sharing an id come from the same reset/task.
        anchors: integer (B, T), anchor-state id of each step (``anchor_ids`` of the raw observation).
        step_penalties: float (B, T) or None, row penalties.
        gamma: discount of the step returns, in [0, 1] (0.95 in verl-agent's GiGPO scripts).
        step_weight: weight w of the step-level term (0 gives plain GRPO).
        norm_by_std: divide by the group std at both levels; False subtracts the mean only.
        eps: std guard at both levels.

    Returns:
        float (B, T), dtype of ``step_rewards``, exactly 0 at padding.

    Raises:
        ValueError: on shape/dtype mismatch between step_rewards (B, T), mask (B, T), group_ids (B,),
            anchors (B, T), a mask that is not left-aligned, or gamma outside [0, 1].
    """
    mask = _bool_mask(mask)
    _check_step_tensor("step_rewards", step_rewards, mask)
    _check_group_ids(group_ids, mask)
    _check_step_tensor("anchors", anchors, mask, integer=True)
    zero = torch.zeros((), dtype=step_rewards.dtype, device=step_rewards.device)
    returns = torch.where(mask, step_rewards, zero).sum(dim=1)
    a_episode = grpo_advantages(returns, mask, group_ids, step_penalties=step_penalties, norm_by_std=norm_by_std,
                                eps=eps)

    step_returns = _minus_penalties(discounted_returns(step_rewards, mask, gamma), mask, step_penalties).flatten()
    real = mask.flatten()
    sid = step_group_ids(group_ids, anchors, mask).flatten()  # -1 at padding: its own group, no members
    count, _, mean, sq_dev = _group_stats(step_returns, real, sid)
    a_step = step_returns - mean
    if norm_by_std:
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        a_step = a_step / (std + eps)
    a_step = torch.where(real & (count > 1), a_step, zero).reshape(mask.shape)
    return torch.where(mask, a_episode + step_weight * a_step, zero)


def gae_advantages(
    step_rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    *,
    step_penalties: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 1.0,
    whiten: bool = True,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor]:
    """Step-level generalised advantage estimation (PPO with a value head).

    delta_t = r_t + gamma * V_{t+1} - V_t, with V after the last real step = 0 (the episode ends there;
    a truncated episode is treated as terminal, no bootstrap), and
    A_t = sum_l (gamma * lam)^l delta_{t+l} over the trajectory's remaining real steps.
    lam = 1 gives the discounted return-to-go minus V_t; lam = 0 the one-step TD error. A row penalty
    p_t is then subtracted from A_t alone (it is not a reward the critic learns to predict).

    Args:
        step_rewards: float (B, T), per-step rewards; padding may hold anything.
        values: float (B, T), V(s_t) from the value head at rollout time (cast to step_rewards' dtype);
            padding may hold anything.
        mask: bool (B, T), True for real steps, left-aligned.
        step_penalties: float (B, T) or None, row penalties.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1].
        whiten: whiten the advantages over the batch's real steps (``masked_whiten``), as verl does.
        eps: variance guard of the whitening.

    Returns:
        (advantages, returns), both float (B, T) of step_rewards' dtype, exactly 0 at padding.
        returns = A + V with the *raw* (un-whitened) A: the value-loss target.

    Raises:
        ValueError: if mask is not 2-D or not left-aligned, step_rewards/values are not float tensors of
            mask's shape, or gamma/lam is outside [0, 1].
    """
    mask = _bool_mask(mask)
    _check_step_tensor("step_rewards", step_rewards, mask)
    _check_step_tensor("values", values, mask)
    _check_left_aligned(mask)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)
    zero = torch.zeros((), dtype=step_rewards.dtype, device=step_rewards.device)
    r = torch.where(mask, step_rewards, zero)
    v = torch.where(mask, values.to(step_rewards.dtype), zero)
    # Left-aligned: the column after a real step is either real or padding (scrubbed to 0), so shifting
    # gives V_{t+1} with the terminal 0 built in.
    next_v = torch.cat([v[:, 1:], torch.zeros_like(v[:, :1])], dim=1)
    delta = torch.where(mask, r + gamma * next_v - v, zero)
    adv = torch.zeros_like(delta)
    running = torch.zeros(delta.shape[0], dtype=delta.dtype, device=delta.device)
    for t in range(delta.shape[1] - 1, -1, -1):
        running = torch.where(mask[:, t], delta[:, t] + gamma * lam * running, zero)
        adv[:, t] = running
    returns = torch.where(mask, adv + v, zero)
    adv = _minus_penalties(adv, mask, step_penalties)
    if whiten:
        adv = masked_whiten(adv, mask, eps=eps)
    return adv, returns


def overlong_penalty(lengths: Tensor, *, max_len: float, buffer_len: float, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment of a response by its length.

    With L_exp = max_len - buffer_len:

    * 0                                   if len <= L_exp,
    * (L_exp - len) / buffer_len * factor  if L_exp < len <= max_len (linear from 0 down to -factor),
    * -factor                             if len > max_len.

    Pure: the caller adds it to the reward of the step that produced the response.

    Args:
        lengths: integer or float tensor of any shape, response lengths in tokens.
        max_len: the hard length limit.
        buffer_len: width of the linear zone, 0 < buffer_len <= max_len.
        factor: size of the full penalty.

    Returns:
        float tensor of ``lengths``' shape (its dtype if floating, else the default float dtype), <= 0
        for factor >= 0.

    Raises:
        ValueError: if buffer_len is not in (0, max_len], or lengths is bool/complex.
    """
    if not 0 < buffer_len <= max_len:
        raise ValueError(f"overlong_penalty needs 0 < buffer_len <= max_len, got buffer_len={buffer_len}, "
                         f"max_len={max_len}")
    lengths = torch.as_tensor(lengths)
    if lengths.dtype == torch.bool or lengths.is_complex():
        raise ValueError(f"lengths must be an integer or float tensor, got dtype {lengths.dtype}")
    dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
    length = lengths.to(dtype)
    expected = max_len - buffer_len
    zero = torch.zeros((), dtype=dtype, device=length.device)
    linear = (expected - length) / buffer_len * factor
    penalty = torch.where(length > expected, linear, zero)
    return torch.where(length > max_len, torch.full_like(length, -factor), penalty)
