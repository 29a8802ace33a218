"""Token-level policy-gradient losses, KL penalties and entropy (verl conventions).

Layout: N rows (one row = one agent step's response), L response tokens per row, right-padded;
``mask`` / ``response_mask`` is bool or float (N, L), nonzero for real tokens. Values at padded tokens
are scrubbed with ``torch.where`` before arithmetic so garbage there cannot produce NaN in the loss
or in its gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "AGG_MODES",
    "KL_KINDS",
    "masked_mean",
    "aggregate_loss",
    "policy_gradient_loss",
    "kl_penalty",
    "entropy_from_logits",
    "value_loss",
]

AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean")
KL_KINDS = ("k1", "k3", "low-var")


def _check_same_shape(**tensors: Tensor) -> None:
    """Raise ValueError naming every shape unless all given tensors share one shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shape mismatch: {listed}")


def masked_mean(values: Tensor, mask: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Mean of ``values`` weighted by ``mask`` (bool or float weights).

    Args:
        values: float (...).
        mask: bool or float, same shape as values.
        dim: reduce over these dims; None reduces over all.

    Returns:
        float, reduced shape (0-d if dim is None), dtype of ``values``. Where the mask sums to 0 the
        result is 0 (not NaN).

    Raises:
        ValueError: if values and mask differ in shape.
    """
    _check_same_shape(values=values, mask=mask)
    w = mask.to(values.dtype)
    num = torch.where(w != 0, values * w, torch.zeros_like(values))
    if dim is None:
        num_s, den = num.sum(), w.sum()
    else:
        num_s, den = num.sum(dim=dim), w.sum(dim=dim)
    nonempty = den != 0
    safe_den = torch.where(nonempty, den, torch.ones_like(den))  # avoid 0/0 even in the unused branch
    return torch.where(nonempty, num_s / safe_den, torch.zeros_like(num_s))


def aggregate_loss(loss_mat: Tensor, mask: Tensor, mode: str) -> Tensor:
    """Reduce a per-token loss matrix to a scalar.

    Modes:
        ``"token-mean"``: sum over real tokens / number of real tokens (every token weighs the same).
        ``"seq-mean-token-sum"``: per-row sum over real tokens, mean over rows with >= 1 real token.
        ``"seq-mean-token-mean"``: per-row mean over real tokens, mean over rows with >= 1 real token.
    Rows without a real token are skipped (their mean is undefined, and counting them would silently
    shrink the loss). All-empty mask gives 0.

    Args:
        loss_mat: float (N, L).
        mask: bool or float (N, L).
        mode: one of ``AGG_MODES``.

    Returns:
        0-d float tensor, dtype of ``loss_mat``.

    Raises:
        ValueError: on shape mismatch, non-2-D input, or unknown mode (message lists allowed modes).
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {mode!r}; allowed: {', '.join(AGG_MODES)}")
    if loss_mat.dim() != 2:
        raise ValueError(f"loss_mat must be (N, L), got shape {tuple(loss_mat.shape)}")
    _check_same_shape(loss_mat=loss_mat, mask=mask)
    if mode == "token-mean":
        return masked_mean(loss_mat, mask)
    w = mask.to(loss_mat.dtype)
    row_has_token = w.sum(dim=1) != 0
    if mode == "seq-mean-token-sum":
        per_row = torch.where(w != 0, loss_mat * w, torch.zeros_like(loss_mat)).sum(dim=1)
    else:
        per_row = masked_mean(loss_mat, mask, dim=1)
    return masked_mean(per_row, row_has_token)


def policy_gradient_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate with asymmetric (DAPO clip-higher) and optional dual clipping.

    Per token: ratio = exp(lp - old); pg1 = -A ratio; pg2 = -A clamp(ratio, 1 - clip_low, 1 + clip_high);
    loss = max(pg1, pg2). With dual_clip = c (> 1), tokens with A < 0 use min(max(pg1, pg2), -c A),
    which caps the loss (and zeroes the gradient) when the ratio of a negative-advantage token explodes.
    lp - old is clamped to [-20, 20] before exp (as verl does) so the ratio cannot overflow.

    Args:
        log_probs: float (N, L), current policy log-probs of the sampled tokens (carries the gradient).
        old_log_probs: float (N, L), behaviour-policy log-probs (treated as constants).
        advantages: float (N,) one per row (agent step), broadcast over its tokens, or (N, L) per token.
        response_mask: bool or float (N, L), nonzero for real response tokens.
        clip_low, clip_high: clip range (1 - clip_low, 1 + clip_high); both >= 0.
        dual_clip: None or a constant c > 1.
        agg: aggregation mode, see :func:`aggregate_loss`.

    Returns:
        loss: 0-d float tensor.
        metrics: dict of detached 0-d tensors (no host sync): ``clipfrac`` (fraction of real tokens
            where the clipped term was active, pg2 > pg1), ``approx_kl`` (mean of old - new over real
            tokens, k1 estimator), ``ratio_mean`` (mean ratio over real tokens).

    Raises:
        ValueError: on shape mismatch, negative clip values, dual_clip <= 1 or unknown agg.
    """
    if log_probs.dim() != 2:
        raise ValueError(f"log_probs must be (N, L), got shape {tuple(log_probs.shape)}")
    _check_same_shape(log_probs=log_probs, old_log_probs=old_log_probs, response_mask=response_mask)
    if advantages.dim() == 1 and advantages.shape[0] == log_probs.shape[0]:
        advantages = advantages.unsqueeze(1).expand(log_probs.shape)
    elif advantages.shape != log_probs.shape:
        raise ValueError(
            f"advantages must be (N,) or (N, L) = {tuple(log_probs.shape)}, got {tuple(advantages.shape)}"
        )
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"clip_low and clip_high must be >= 0, got {clip_low}, {clip_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be None or > 1, got {dual_clip}")
    if agg not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation mode {agg!r}; allowed: {', '.join(AGG_MODES)}")

    real = response_mask.to(torch.bool) if response_mask.dtype != torch.bool else response_mask
    zeros = torch.zeros_like(log_probs)
    lp = torch.where(real, log_probs, zeros)
    old = torch.where(real, old_log_probs.detach(), zeros)
    adv = torch.where(real, advantages.detach().to(log_probs.dtype), zeros)

    log_ratio = torch.clamp(lp - old, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    clipped = torch.maximum(pg1, pg2)
    if dual_clip is not None:
        # Only negative advantages: min(., -c A) bounds how hard an off-policy bad token is pushed down.
        clipped = torch.where(adv < 0, torch.minimum(clipped, -dual_clip * adv), clipped)

    loss = aggregate_loss(clipped, response_mask, agg)
    with torch.no_grad():
        metrics = {
            "clipfrac": masked_mean((pg2 > pg1).to(log_probs.dtype), real),
            "approx_kl": masked_mean(old - lp, real),
            "ratio_mean": masked_mean(ratio, real),
        }
    return loss, {name: v.detach() for name, v in metrics.items()}


def kl_penalty(log_probs: Tensor, ref_log_probs: Tensor, kind: str = "low-var") -> Tensor:
    """Per-token KL(pi || pi_ref) estimate from sampled-token log-probs.

    Kinds:
        ``"k1"``: lp - ref (unbiased, high variance, can be negative).
        ``"k3"``: Schulman's k3, exp(ref - lp) - (ref - lp) - 1 (unbiased, always >= 0).
        ``"low-var"``: k3 as in verl's ``low_var_kl``: ref - lp clamped to [-20, 20] before exp, result
            clamped to [-10, 10] so one badly off-policy token cannot dominate.

    Args:
        log_probs: float (N, L), current policy.
        ref_log_probs: float (N, L), reference policy.
        kind: one of ``KL_KINDS``.

    Returns:
        float (N, L), dtype of ``log_probs``; masking is the caller's job (e.g. :func:`aggregate_loss`).

    Raises:
        ValueError: on shape mismatch or unknown kind (message lists allowed kinds).
    """
    if kind not in KL_KINDS:
        raise ValueError(f"unknown kl kind {kind!r}; allowed: {', '.join(KL_KINDS)}")
    _check_same_shape(log_probs=log_probs, ref_log_probs=ref_log_probs)
    if kind == "k1":
        return log_probs - ref_log_probs
    diff = ref_log_probs - log_probs
    if kind == "low-var":
        diff = torch.clamp(diff, min=-20.0, max=20.0)
    kl = torch.exp(diff) - diff - 1.0
    if kind == "low-var":
        kl = torch.clamp(kl, min=-10.0, max=10.0)
    return kl


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy -sum p log p of softmax(logits) over the last dim, numerically stable.

    log p comes from log_softmax (logsumexp-based), never log(softmax), so tiny probabilities do not
    underflow to log 0. Entries with p == 0 (e.g. logits of -inf for a masked vocabulary) contribute 0
    and give finite gradients.

    Args:
        logits: float (..., V) with V >= 1.

    Returns:
        float (...), dtype of ``logits``.

    Raises:
        ValueError: if logits is 0-d or has an empty last dim.
    """
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must be (..., V) with V >= 1, got shape {tuple(logits.shape)}")
    logp = torch.log_softmax(logits, dim=-1)
    p = torch.exp(logp)
    # p * logp is 0 * -inf = NaN where p == 0; replace log p there before multiplying.
    logp_safe = torch.where(p > 0, logp, torch.zeros_like(logp))
    return -(p * logp_safe).sum(dim=-1)


def value_loss(values: Tensor, old_values: Tensor, targets: Tensor, *,
               clip: float | None = 0.2) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped value loss 0.5 * mean(max((V - R)^2, (V_clip - R)^2)), one value per agent step.

    V_clip = V_old + clamp(V - V_old, -clip, clip) keeps the value from moving further than ``clip``
    from its rollout-time estimate in one update; ``clip=None`` gives the plain squared error.

    Args:
        values: float (N,), current value predictions (carry the gradient).
        old_values: float (N,), predictions at rollout time (constants).
        targets: float (N,), the returns the value regresses to (GAE's A + V_old).
        clip: None or > 0.

    Returns:
        loss: 0-d float tensor.
        metrics: detached 0-d tensors ``value_clipfrac`` (fraction of rows where the clipped term
            was the larger) and ``value_error`` (mean |V - R|).

    Raises:
        ValueError: on shape mismatch, non-1-D input or clip <= 0.
    """
    if values.dim() != 1:
        raise ValueError(f"values must be (N,), got shape {tuple(values.shape)}")
    _check_same_shape(values=values, old_values=old_values, targets=targets)
    if clip is not None and clip <= 0:
        raise ValueError(f"value clip must be None or > 0, got {clip}")
    old, target = old_values.detach().to(values.dtype), targets.detach().to(values.dtype)
    err = (values - target) ** 2
    if clip is None:
        loss_rows, clipped_rows = err, torch.zeros_like(err, dtype=torch.bool)
    else:
        v_clip = old + torch.clamp(values - old, -clip, clip)
        err_clip = (v_clip - target) ** 2
        loss_rows, clipped_rows = torch.maximum(err, err_clip), err_clip > err
    loss = 0.5 * loss_rows.mean() if values.numel() else values.sum() * 0.0
    with torch.no_grad():
        metrics = {"value_clipfrac": clipped_rows.to(values.dtype).mean() if values.numel() else loss.detach(),
                   "value_error": (values - target).abs().mean() if values.numel() else loss.detach()}
    return loss, {k: v.detach() for k, v in metrics.items()}
