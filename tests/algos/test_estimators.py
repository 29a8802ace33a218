"""Tests for the step-level estimators in src.algos.advantages: hand-worked batches and properties."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

from src.algos.advantages import (
    anchor_ids,
    discounted_returns,
    gae_advantages,
    gigpo_advantages,
    grpo_advantages,
    masked_whiten,
    overlong_penalty,
    reinforce_pp_advantages,
    shared_state_fraction,
    step_group_ids,
)

F64 = torch.float64
NAN, INF = float("nan"), float("inf")
HYP = settings(max_examples=40, deadline=None)
R2 = math.sqrt(2.0)


def _mask(lengths, t):
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    return mask


# ----------------------------------------------------------------------------------------------------
# discounted_returns
# ----------------------------------------------------------------------------------------------------

def test_discounted_returns_hand_worked_with_nan_padding():
    # row 0 rewards 1, 2, 4; row 1 reward 3 then padding (NaN, inf).
    # gamma = 0.5: row 0: R2 = 4, R1 = 2 + 0.5 * 4 = 4, R0 = 1 + 0.5 * 4 = 3; row 1: R0 = 3 (padding -> 0).
    # gamma = 1: row 0: 7, 6, 4.  gamma = 0: the rewards themselves.
    rewards = torch.tensor([[1.0, 2.0, 4.0], [3.0, NAN, INF]], dtype=F64)
    mask = _mask([3, 1], 3)
    assert torch.equal(discounted_returns(rewards, mask, 0.5), torch.tensor([[3.0, 4.0, 4.0], [3.0, 0.0, 0.0]], dtype=F64))
    assert torch.equal(discounted_returns(rewards, mask, 1.0), torch.tensor([[7.0, 6.0, 4.0], [3.0, 0.0, 0.0]], dtype=F64))
    assert torch.equal(discounted_returns(rewards, mask, 0.0), torch.tensor([[1.0, 2.0, 4.0], [3.0, 0.0, 0.0]], dtype=F64))
    out32 = discounted_returns(rewards.float(), mask.int(), 0.5)  # non-bool mask read as != 0
    assert out32.dtype == torch.float32 and torch.equal(out32, torch.tensor([[3.0, 4.0, 4.0], [3.0, 0.0, 0.0]]))


def test_discounted_returns_input_checks():
    mask = _mask([2, 1], 2)
    for bad in (-0.1, 1.5, NAN):
        with pytest.raises(ValueError, match="gamma"):
            discounted_returns(torch.zeros(2, 2), mask, bad)
    with pytest.raises(ValueError, match=r"rewards.*\(2, 3\).*\(2, 2\)"):
        discounted_returns(torch.zeros(2, 3), mask, 0.5)
    with pytest.raises(ValueError, match="floating"):
        discounted_returns(torch.zeros(2, 2, dtype=torch.long), mask, 0.5)
    with pytest.raises(ValueError, match=r"left-aligned.*\[1\]"):
        discounted_returns(torch.zeros(2, 2), torch.tensor([[True, True], [False, True]]), 0.5)
    with pytest.raises(ValueError, match=r"mask must be \(B, T\)"):
        discounted_returns(torch.zeros(2), torch.ones(2, dtype=torch.bool), 0.5)


# ----------------------------------------------------------------------------------------------------
# masked_whiten
# ----------------------------------------------------------------------------------------------------

def test_masked_whiten_unbiased_hand_worked():
    # Real entries 0, 2, 4 (padding NaN / inf / -inf): mean 2, deviations -2, 0, 2,
    # unbiased var = (4 + 0 + 4) / 2 = 4 -> std 2 -> -1, 0, 1 exactly with eps = 0.
    # (The population std sqrt(8/3) would give -1.2247, 0, 1.2247.)
    values = torch.tensor([[0.0, 2.0, NAN], [4.0, INF, -INF]], dtype=F64)
    mask = _mask([2, 1], 3)
    exp = torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
    assert torch.equal(masked_whiten(values, mask, eps=0.0), exp)
    # default eps 1e-8: divide by sqrt(4 + 1e-8) = 2 * (1 + 1.25e-9)
    torch.testing.assert_close(masked_whiten(values, mask), exp, atol=1e-8, rtol=0)
    # Two entries 1, 3: mean 2, unbiased var (1 + 1) / 1 = 2 -> -1/sqrt(2), 1/sqrt(2).
    out = masked_whiten(torch.tensor([[1.0, 3.0]], dtype=F64), torch.ones(1, 2, dtype=torch.bool), eps=0.0)
    torch.testing.assert_close(out, torch.tensor([[-1 / R2, 1 / R2]], dtype=F64))


def test_masked_whiten_fewer_than_two_entries_returns_centred_values():
    # One real entry: centred value 5 - 5 = 0. None: all zeros. Never NaN.
    values = torch.tensor([[5.0, NAN], [INF, 1.0]])
    assert torch.equal(masked_whiten(values, torch.tensor([[True, False], [False, False]])), torch.zeros(2, 2))
    assert torch.equal(masked_whiten(values, torch.zeros(2, 2, dtype=torch.bool)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"values.*\(2, 2\).*\(2, 3\)"):
        masked_whiten(values, torch.ones(2, 3, dtype=torch.bool))


# ----------------------------------------------------------------------------------------------------
# REINFORCE++
# ----------------------------------------------------------------------------------------------------

def test_reinforce_pp_hand_worked():
    # gamma = 0.5:
    #   row 0 rewards 0, 0, 4  -> R = 0 + .5 * 2 = 1, 0 + .5 * 4 = 2, 4
    #   row 1 reward  3        -> R = 3
    #   row 2 rewards -1, 2    -> R = -1 + .5 * 2 = 0, 2
    # real R: 1, 2, 4, 3, 0, 2 -> mean 2, deviations -1, 0, 2, 1, -2, 0, sum sq 10, unbiased var 10/5 = 2
    #   -> A = deviation / sqrt(2)
    rewards = torch.tensor([[0.0, 0.0, 4.0], [3.0, NAN, NAN], [-1.0, 2.0, INF]], dtype=F64)
    mask = _mask([3, 1, 2], 3)
    exp = torch.tensor([[-1 / R2, 0.0, R2], [1 / R2, 0.0, 0.0], [-R2, 0.0, 0.0]], dtype=F64)
    out = reinforce_pp_advantages(rewards, mask, gamma=0.5, eps=0.0)
    torch.testing.assert_close(out, exp, atol=1e-12, rtol=0)
    # whitened: mean 0, unbiased std 1 over real steps; exactly 0 at padding
    assert out[mask].mean().item() == pytest.approx(0.0, abs=1e-12)
    assert out[mask].std(unbiased=True).item() == pytest.approx(1.0, abs=1e-12)
    assert (out[~mask] == 0).all()
    # default gamma = 1: R = 4, 4, 4 | 3 | 1, 2 -> mean 3, deviations 1, 1, 1, 0, -2, -1, sum sq 8,
    #   unbiased var 8/5 = 1.6 -> A = deviation / sqrt(1.6) = deviation * 0.7905694150
    out1 = reinforce_pp_advantages(rewards, mask)
    k = 1 / math.sqrt(1.6)
    exp1 = torch.tensor([[k, k, k], [0.0, 0.0, 0.0], [-2 * k, -k, 0.0]], dtype=F64)
    torch.testing.assert_close(out1, exp1, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------------------------------
# anchor_ids
# ----------------------------------------------------------------------------------------------------

def test_anchor_ids_stable_value_and_equality():
    # blake2b(b"You are in the middle of a room.", digest_size=8) read big-endian = 9564810173507911101;
    # masked to 63 bits: 9564810173507911101 - 2^63 = 341438136653135293. A change of hashing fails here.
    obs = ["You are in the middle of a room.", "", "You are in the middle of a room.", "You are in the middle of a room"]
    ids = anchor_ids(obs)
    assert ids.dtype == torch.long and ids.shape == (4,)
    assert ids[0].item() == 341438136653135293
    assert anchor_ids([""]).item() == 7252660547403494068
    assert ids[0] == ids[2] and ids[0] != ids[3] and ids[0] != ids[1]
    assert (ids >= 0).all()
    assert anchor_ids([]).shape == (0,)
    with pytest.raises(TypeError, match="single str"):
        anchor_ids("abc")
    with pytest.raises(TypeError, match=r"observations\[1\]"):
        anchor_ids(["a", 3])


# ----------------------------------------------------------------------------------------------------
# GiGPO: step grouping and advantages on one hand-built batch
#
#   traj  group  observations (. = padding)   rewards        R (gamma = 0.5)     episode return
#   0     7      A  B  A                      0  1  1        .75  1.5  1          2
#   1     7      A  C  .                      0  1  .        .5   1    .          1
#   2     7      B  .  .                      0  .  .        0    .    .          0
#   3     3      A  D  D                      0  0  2        .5   1    2          2
#   4     3      D  E  .                      0  0  .        0    0    .          0
#
# A repeats within traj 0 at steps 0 and 2 and in traj 1 at step 0; B appears at step 1 (traj 0) and
# step 0 (traj 2); D at steps 1, 2 of traj 3 and step 0 of traj 4. A also appears in group 3, which must
# NOT merge with group 7's A. Padding holds NaN rewards and the anchor of "E" (only real in group 3).
#
# Step groups by first appearance (b then t): 0 = A@7, 1 = B@7, 2 = C@7, 3 = A@3, 4 = D@3, 5 = E@3.
# ----------------------------------------------------------------------------------------------------

OBS = [["A", "B", "A"], ["A", "C", "E"], ["B", "E", "E"], ["A", "D", "D"], ["D", "E", "E"]]
LENGTHS = [3, 2, 1, 3, 2]
GROUPS = torch.tensor([7, 7, 7, 3, 3])
REWARDS = torch.tensor(
    [[0.0, 1.0, 1.0], [0.0, 1.0, NAN], [0.0, NAN, NAN], [0.0, 0.0, 2.0], [0.0, 0.0, NAN]], dtype=F64
)


def _anchors():
    return anchor_ids([o for row in OBS for o in row]).reshape(5, 3)


def test_step_group_ids_hand_built():
    mask = _mask(LENGTHS, 3)
    ids = step_group_ids(GROUPS, _anchors(), mask)
    exp = torch.tensor([[0, 1, 0], [0, 2, -1], [1, -1, -1], [3, 4, 4], [4, 5, -1]])
    assert ids.dtype == torch.long and torch.equal(ids, exp)
    # Without the group split the two A's would merge: same batch, one group.
    merged = step_group_ids(torch.zeros(5, dtype=torch.long), _anchors(), mask)
    assert merged[3, 0] == merged[0, 0]
    # Garbage anchors at padding change nothing.
    anchors = torch.where(mask, _anchors(), torch.full((5, 3), -123))
    assert torch.equal(step_group_ids(GROUPS, anchors, mask), exp)
    assert torch.equal(step_group_ids(GROUPS, anchors, torch.zeros(5, 3, dtype=torch.bool)), torch.full((5, 3), -1))


def test_shared_state_fraction_hand_built():
    # step groups of the hand-built batch: sizes 3 (id 0), 2 (id 1), 1, 1, 3 (id 4), 1 -> 8 of 11 real steps share
    mask = _mask(LENGTHS, 3)
    assert shared_state_fraction(GROUPS, _anchors(), mask) == pytest.approx(8 / 11)
    assert shared_state_fraction(GROUPS, _anchors(), torch.zeros(5, 3, dtype=torch.bool)) == 0.0
    # every trajectory its own group: only the repeated anchor within a row is shared (row 0: t0, t2; row 3: t1, t2)
    assert shared_state_fraction(torch.arange(5), _anchors(), mask) == pytest.approx(4 / 11)


def test_step_group_ids_input_checks():
    mask = _mask(LENGTHS, 3)
    with pytest.raises(ValueError, match=r"group_ids.*\(4,\).*\(5, 3\)"):
        step_group_ids(GROUPS[:4], _anchors(), mask)
    with pytest.raises(ValueError, match=r"anchors.*\(5, 2\).*\(5, 3\)"):
        step_group_ids(GROUPS, _anchors()[:, :2], mask)
    with pytest.raises(ValueError, match="anchors must be an integer"):
        step_group_ids(GROUPS, _anchors().double(), mask)
    with pytest.raises(ValueError, match="group_ids must be an integer"):
        step_group_ids(GROUPS.float(), _anchors(), mask)


def test_gigpo_mean_norm_hand_worked():
    # Episode level (Dr.GRPO, mean only): group 7 returns 2, 1, 0 -> mean 1 -> 1, 0, -1;
    #   group 3 returns 2, 0 -> mean 1 -> 1, -1.
    # Step level, R - mean of the step group:
    #   A@7: R .75, 1, .5 (traj 0 steps 0, 2; traj 1 step 0) -> mean .75 -> 0, .25, -.25
    #   B@7: R 1.5, 0 -> mean .75 -> .75, -.75
    #   C@7, A@3, E@3: singletons -> 0
    #   D@3: R 1, 2, 0 (traj 3 steps 1, 2; traj 4 step 0) -> mean 1 -> 0, 1, -1
    # A = A_episode + A_step:
    #   traj 0: 1 + [0, .75, .25]  = [1, 1.75, 1.25]
    #   traj 1: 0 + [-.25, 0]      = [-.25, 0]
    #   traj 2: -1 + [-.75]        = [-1.75]
    #   traj 3: 1 + [0, 0, 1]      = [1, 1, 2]
    #   traj 4: -1 + [-1, 0]       = [-2, -1]
    mask = _mask(LENGTHS, 3)
    out = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=0.5, norm_by_std=False)
    exp = torch.tensor(
        [[1.0, 1.75, 1.25], [-0.25, 0.0, 0.0], [-1.75, 0.0, 0.0], [1.0, 1.0, 2.0], [-2.0, -1.0, 0.0]], dtype=F64
    )
    assert torch.equal(out, exp)
    # step_weight = 0.5 halves the step part: traj 0 -> [1, 1.375, 1.125]
    half = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=0.5, step_weight=0.5, norm_by_std=False)
    assert torch.equal(half[0], torch.tensor([1.0, 1.375, 1.125], dtype=F64))


def test_gigpo_mean_std_norm_hand_worked():
    # Episode level, unbiased std: group 7 deviations 1, 0, -1 -> var (1 + 0 + 1) / 2 = 1 -> 1, 0, -1;
    #   group 3 deviations 1, -1 -> var 2 / 1 = 2 -> 1/sqrt(2), -1/sqrt(2).
    # Step level: A@7 deviations 0, .25, -.25 -> var .125 / 2 = .0625, std .25 -> 0, 1, -1
    #   B@7 deviations .75, -.75 -> var 1.125, std .75 sqrt(2) -> 1/sqrt(2), -1/sqrt(2)
    #   D@3 deviations 0, 1, -1 -> var 1, std 1 -> 0, 1, -1; singletons 0.
    # eps = 1e-6 in every denominator shifts the results by < 4e-6.
    mask = _mask(LENGTHS, 3)
    out = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=0.5)
    s = 1 / R2
    exp = torch.tensor(
        [[1.0, 1.0 + s, 2.0], [-1.0, 0.0, 0.0], [-1.0 - s, 0.0, 0.0], [s, s, s + 1.0], [-s - 1.0, -s, 0.0]], dtype=F64
    )
    torch.testing.assert_close(out, exp, atol=1e-5, rtol=0)
    assert (out[~mask] == 0).all()


def test_gigpo_step_weight_zero_equals_grpo():
    mask = _mask(LENGTHS, 3)
    returns = torch.tensor([2.0, 1.0, 0.0, 2.0, 0.0], dtype=F64)
    for norm in (True, False):
        out = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), step_weight=0.0, norm_by_std=norm)
        assert torch.equal(out, grpo_advantages(returns, mask, GROUPS, norm_by_std=norm))


def test_gigpo_input_checks():
    mask = _mask(LENGTHS, 3)
    with pytest.raises(ValueError, match=r"step_rewards.*\(5, 2\).*\(5, 3\)"):
        gigpo_advantages(REWARDS[:, :2], mask, GROUPS, _anchors())
    with pytest.raises(ValueError, match="anchors must be an integer"):
        gigpo_advantages(REWARDS, mask, GROUPS, REWARDS)
    with pytest.raises(ValueError, match="gamma"):
        gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=2.0)


# ----------------------------------------------------------------------------------------------------
# GAE
#
# rewards = [[1, 0, 2], [3, NaN, NaN]], values = [[.5, 1, 1.5], [2, NaN, inf]], lengths 3, 1
# ----------------------------------------------------------------------------------------------------

GAE_R = torch.tensor([[1.0, 0.0, 2.0], [3.0, NAN, NAN]], dtype=F64)
GAE_V = torch.tensor([[0.5, 1.0, 1.5], [2.0, NAN, INF]], dtype=F64)
GAE_MASK = _mask([3, 1], 3)


def test_gae_lam_one_gamma_one_is_return_to_go_minus_value():
    # returns-to-go: row 0 [3, 2, 2], row 1 [3]; minus V -> [2.5, 1, .5], [1]. returns = A + V = RTG.
    adv, ret = gae_advantages(GAE_R, GAE_V, GAE_MASK, whiten=False)
    assert torch.equal(adv, torch.tensor([[2.5, 1.0, 0.5], [1.0, 0.0, 0.0]], dtype=F64))
    assert torch.equal(ret, torch.tensor([[3.0, 2.0, 2.0], [3.0, 0.0, 0.0]], dtype=F64))


def test_gae_lam_zero_is_one_step_td_error():
    # gamma = 1: delta_0 = 1 + 1 - .5 = 1.5, delta_1 = 0 + 1.5 - 1 = .5, delta_2 = 2 + 0 - 1.5 = .5 (V after
    # the last real step = 0); row 1: 3 + 0 - 2 = 1. returns = delta + V = [2, 1.5, 2], [3].
    adv, ret = gae_advantages(GAE_R, GAE_V, GAE_MASK, lam=0.0, whiten=False)
    assert torch.equal(adv, torch.tensor([[1.5, 0.5, 0.5], [1.0, 0.0, 0.0]], dtype=F64))
    assert torch.equal(ret, torch.tensor([[2.0, 1.5, 2.0], [3.0, 0.0, 0.0]], dtype=F64))


def test_gae_general_and_whitened():
    # gamma = .5, lam = .5 (gamma * lam = .25):
    #   delta_0 = 1 + .5 * 1 - .5 = 1, delta_1 = 0 + .5 * 1.5 - 1 = -.25, delta_2 = 2 - 1.5 = .5; row 1: 1
    #   A_2 = .5, A_1 = -.25 + .25 * .5 = -.125, A_0 = 1 + .25 * -.125 = .96875; row 1: 1
    #   returns = A + V = [1.46875, .875, 2], [3]
    adv, ret = gae_advantages(GAE_R, GAE_V, GAE_MASK, gamma=0.5, lam=0.5, whiten=False)
    raw = torch.tensor([[0.96875, -0.125, 0.5], [1.0, 0.0, 0.0]], dtype=F64)
    assert torch.equal(adv, raw)
    assert torch.equal(ret, torch.tensor([[1.46875, 0.875, 2.0], [3.0, 0.0, 0.0]], dtype=F64))
    # whitened: real A .96875, -.125, .5, 1 -> mean 2.34375 / 4 = .5859375,
    #   deviations .3828125, -.7109375, -.0859375, .4140625, squares .1465454102 + .5054321289 + .0073852539
    #   + .1714477539 = .830810546875 (= 3403/4096), unbiased var / 3 = .2769368490, std .5262478969
    #   -> [.7274376, -1.3509555, -.1633023, .7868202]; returns stay raw.
    adv_w, ret_w = gae_advantages(GAE_R, GAE_V, GAE_MASK, gamma=0.5, lam=0.5)
    exp_w = torch.tensor([[0.7274376, -1.3509555, -0.1633023], [0.7868202, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(adv_w, exp_w, atol=1e-6, rtol=0)
    assert torch.equal(ret_w, ret)
    # float32 rewards with float64 values -> float32 outputs
    adv32, ret32 = gae_advantages(GAE_R.float(), GAE_V, GAE_MASK, gamma=0.5, lam=0.5, whiten=False)
    assert adv32.dtype == ret32.dtype == torch.float32 and torch.equal(adv32, raw.float())


def test_gae_input_checks():
    with pytest.raises(ValueError, match=r"values.*\(2, 2\).*\(2, 3\)"):
        gae_advantages(GAE_R, GAE_V[:, :2], GAE_MASK)
    with pytest.raises(ValueError, match="lam"):
        gae_advantages(GAE_R, GAE_V, GAE_MASK, lam=1.01)
    with pytest.raises(ValueError, match="gamma"):
        gae_advantages(GAE_R, GAE_V, GAE_MASK, gamma=-1.0)


# ----------------------------------------------------------------------------------------------------
# Overlong penalty (DAPO)
# ----------------------------------------------------------------------------------------------------

def test_overlong_penalty_regimes_and_boundaries():
    # max_len 10, buffer 4 -> expected length 6; factor .5.
    #   len <= 6: 0 (0, 5 and the boundary 6)
    #   6 < len <= 10: (6 - len) / 4 * .5 -> 7: -.125, 8: -.25, 9: -.375, 10 (boundary): -.5
    #   len > 10: -.5 (11, 100)
    lengths = torch.tensor([0, 5, 6, 7, 8, 9, 10, 11, 100])
    out = overlong_penalty(lengths, max_len=10, buffer_len=4, factor=0.5)
    assert out.dtype == torch.get_default_dtype() and out.shape == lengths.shape
    assert out.tolist() == [0.0, 0.0, 0.0, -0.125, -0.25, -0.375, -0.5, -0.5, -0.5]
    # float lengths keep their dtype; fractional length 6.5 -> -.5 / 4 = -.125 with factor 1
    out64 = overlong_penalty(torch.tensor([[6.5, 12.0]], dtype=F64), max_len=10, buffer_len=4)
    assert out64.dtype == F64 and out64.tolist() == [[-0.125, -1.0]]
    # buffer_len = max_len: linear from length 0
    assert overlong_penalty(torch.tensor([0, 5, 10]), max_len=10, buffer_len=10).tolist() == [0.0, -0.5, -1.0]


def test_overlong_penalty_checks():
    for buffer_len in (0, -1, 11):
        with pytest.raises(ValueError, match="buffer_len"):
            overlong_penalty(torch.tensor([3]), max_len=10, buffer_len=buffer_len)
    with pytest.raises(ValueError, match="lengths"):
        overlong_penalty(torch.tensor([True]), max_len=10, buffer_len=2)


# ----------------------------------------------------------------------------------------------------
# Properties on random batches
# ----------------------------------------------------------------------------------------------------

GARBAGE = st.sampled_from([NAN, INF, -INF, 1e6, -7.0])


@st.composite
def step_batches(draw):
    """(rewards, values, mask, group_ids, anchors): float64 (B, T) left-aligned, anchors from a small set."""
    b = draw(st.integers(1, 6))
    t = draw(st.integers(1, 5))
    lengths = draw(st.lists(st.integers(0, t), min_size=b, max_size=b))
    mask = _mask(lengths, t)
    rewards = torch.tensor(draw(st.lists(st.integers(-4, 4), min_size=b * t, max_size=b * t)), dtype=F64)
    values = torch.tensor(draw(st.lists(st.floats(-2.0, 2.0), min_size=b * t, max_size=b * t)), dtype=F64)
    groups = torch.tensor(draw(st.lists(st.integers(0, 2), min_size=b, max_size=b)))
    anchors = torch.tensor(draw(st.lists(st.integers(0, 3), min_size=b * t, max_size=b * t)))
    garbage = draw(GARBAGE)
    rewards = torch.where(mask, (rewards * 0.5).reshape(b, t), torch.full((b, t), garbage, dtype=F64))
    values = torch.where(mask, values.reshape(b, t), torch.full((b, t), garbage, dtype=F64))
    return rewards, values, mask, groups, anchors.reshape(b, t)


def _all_outputs(rewards, values, mask, groups, anchors):
    gae_a, gae_r = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.7)
    return {
        "discounted": discounted_returns(rewards, mask, 0.9),
        "whiten": masked_whiten(rewards, mask),
        "reinforce_pp": reinforce_pp_advantages(rewards, mask, gamma=0.9),
        "gigpo": gigpo_advantages(rewards, mask, groups, anchors),
        "gigpo_mean": gigpo_advantages(rewards, mask, groups, anchors, norm_by_std=False),
        "gae_adv": gae_a,
        "gae_ret": gae_r,
    }


def _same_partition(ids_a, ids_b, mask):
    a, b = ids_a[mask], ids_b[mask]
    return torch.equal(a[:, None] == a[None, :], b[:, None] == b[None, :])


@HYP
@given(step_batches(), st.randoms(use_true_random=False))
def test_permuting_trajectories_permutes_outputs(batch, rnd):
    rewards, values, mask, groups, anchors = batch
    perm_list = list(range(mask.shape[0]))
    rnd.shuffle(perm_list)
    perm = torch.tensor(perm_list)
    ref = _all_outputs(rewards, values, mask, groups, anchors)
    out = _all_outputs(rewards[perm], values[perm], mask[perm], groups[perm], anchors[perm])
    for name in ref:
        torch.testing.assert_close(out[name], ref[name][perm], atol=1e-9, rtol=0, msg=name)
    # Step-group ids are renumbered by first appearance, but the partition is the same.
    ids = step_group_ids(groups, anchors, mask)
    ids_p = step_group_ids(groups[perm], anchors[perm], mask[perm])
    assert _same_partition(ids_p, ids[perm], mask[perm])


@HYP
@given(step_batches(), st.integers(0, 2), st.integers(0, 2), GARBAGE)
def test_padding_rows_and_columns_with_garbage_change_nothing(batch, extra_rows, extra_cols, garbage):
    rewards, values, mask, groups, anchors = batch
    b, t = mask.shape
    ref = _all_outputs(rewards, values, mask, groups, anchors)
    ref_ids = step_group_ids(groups, anchors, mask)
    shape = (b + extra_rows, t + extra_cols)
    r2 = torch.full(shape, garbage, dtype=F64)
    v2 = torch.full(shape, -garbage, dtype=F64)
    a2 = torch.full(shape, 2, dtype=torch.long)  # an anchor that may also be real in the batch
    m2 = torch.zeros(shape, dtype=torch.bool)
    r2[:b, :t] = torch.where(mask, rewards, torch.full_like(rewards, garbage))
    v2[:b, :t] = torch.where(mask, values, torch.full_like(values, NAN))
    a2[:b, :t] = torch.where(mask, anchors, torch.full_like(anchors, 1))
    m2[:b, :t] = mask
    g2 = torch.cat([groups, torch.zeros(extra_rows, dtype=groups.dtype)])  # padding rows join group 0
    out = _all_outputs(r2, v2, m2, g2, a2)
    for name in ref:
        torch.testing.assert_close(out[name][:b, :t], ref[name], atol=1e-9, rtol=0, msg=name)
        assert (out[name][b:] == 0).all() and (out[name][:, t:] == 0).all(), name
    ids = step_group_ids(g2, a2, m2)
    assert torch.equal(ids[:b, :t], ref_ids) and (ids[b:] == -1).all() and (ids[:, t:] == -1).all()


@HYP
@given(step_batches())
def test_step_group_ids_match_brute_force(batch):
    _, _, mask, groups, anchors = batch
    ids = step_group_ids(groups, anchors, mask)
    real = [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[b, t]]
    seen = {}
    for b, t in real:  # first appearance scanning b then t
        seen.setdefault((int(groups[b]), int(anchors[b, t])), len(seen))
        assert ids[b, t].item() == seen[(int(groups[b]), int(anchors[b, t]))]
    assert (ids[~mask] == -1).all()


@HYP
@given(step_batches(), st.floats(0.0, 1.0))
def test_gae_lam_one_matches_discounted_returns(batch, gamma):
    rewards, values, mask, _, _ = batch
    adv, ret = gae_advantages(rewards, values, mask, gamma=gamma, lam=1.0, whiten=False)
    disc = discounted_returns(rewards, mask, gamma)
    torch.testing.assert_close(ret, disc, atol=1e-9, rtol=0)
    torch.testing.assert_close(adv, torch.where(mask, disc - values, torch.zeros_like(disc)), atol=1e-9, rtol=0)


@HYP
@given(step_batches(), st.floats(0.0, 1.0))
def test_reinforce_pp_mean_zero_unbiased_std_one(batch, gamma):
    rewards, _, mask, _, _ = batch
    out = reinforce_pp_advantages(rewards, mask, gamma=gamma)
    assert torch.isfinite(out).all() and (out[~mask] == 0).all()
    n = int(mask.sum())
    if n < 2:
        assert (out == 0).all()
        return
    assert out[mask].mean().item() == pytest.approx(0.0, abs=1e-9)
    var = discounted_returns(rewards, mask, gamma)[mask].var(unbiased=True).item()
    assert out[mask].std(unbiased=True).item() == pytest.approx(math.sqrt(var / (var + 1e-8)), abs=1e-7)


# ----------------------------------------------------------------------------------------------------
# Row penalties on the step-level estimators: subtracted at their own step, never discounted backwards
# ----------------------------------------------------------------------------------------------------

def test_step_level_penalties_stay_on_their_step():
    # One invalid step: trajectory 0, step 1, p = 0.25.
    pen = torch.zeros(5, 3, dtype=F64)
    pen[0, 1] = 0.25
    mask = _mask(LENGTHS, 3)
    # GiGPO mean_norm, gamma .5 (numbers of test_gigpo_mean_norm_hand_worked, redone with the penalty):
    #   episode level, group 7: row scores [2, 1.75, 2], [1, 1], [0]; trajectory means 1.91666.., 1, 0
    #   -> mean 0.97222..: traj 0 rows 1.02777.., 0.77777.., 1.02777..; traj 1 .02777..; traj 2 -.97222..
    #   step level: B@7 step returns 1.5 - .25 = 1.25 (traj 0 step 1) and 0 (traj 2) -> mean .625 -> .625, -.625
    #   A@7 unchanged: 0, .25, -.25 (traj 0 steps 0, 2; traj 1 step 0)
    out = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=0.5, norm_by_std=False, step_penalties=pen)
    m = (2 - 0.25 / 3 + 1 + 0) / 3
    exp0 = torch.tensor([2 - m + 0.0, 1.75 - m + 0.625, 2 - m + 0.25], dtype=F64)
    torch.testing.assert_close(out[0], exp0, atol=1e-12, rtol=0)
    torch.testing.assert_close(out[2, 0], torch.tensor(-m - 0.625, dtype=F64), atol=1e-12, rtol=0)
    # group 3 has no penalty: unchanged
    ref = gigpo_advantages(REWARDS, mask, GROUPS, _anchors(), gamma=0.5, norm_by_std=False)
    assert torch.equal(out[3:], ref[3:])

    # REINFORCE++ (gamma .5, eps 0; rewards of test_reinforce_pp_hand_worked): R = 1, 2, 4 | 3 | 0, 2; the
    # penalty .25 on row 0 step 1 gives 1, 1.75, 4 | 3 | 0, 2 (step 0 keeps 1: not discounted back)
    rewards = torch.tensor([[0.0, 0.0, 4.0], [3.0, NAN, NAN], [-1.0, 2.0, INF]], dtype=F64)
    rmask = _mask([3, 1, 2], 3)
    rpen = torch.zeros(3, 3, dtype=F64)
    rpen[0, 1] = 0.25
    out = reinforce_pp_advantages(rewards, rmask, gamma=0.5, eps=0.0, step_penalties=rpen)
    real = torch.tensor([1.0, 1.75, 4.0, 3.0, 0.0, 2.0], dtype=F64)
    exp = (real - real.mean()) / real.std(unbiased=True)
    torch.testing.assert_close(out[rmask], exp, atol=1e-12, rtol=0)

    # GAE (lam = gamma = 1, no whitening): A = [2.5, 1, .5] | [1]; p .25 on row 0 step 1 -> [2.5, .75, .5];
    # the value targets (returns-to-go) are not penalised
    gpen = torch.zeros(2, 3, dtype=F64)
    gpen[0, 1] = 0.25
    adv, ret = gae_advantages(GAE_R, GAE_V, GAE_MASK, whiten=False, step_penalties=gpen)
    assert torch.equal(adv, torch.tensor([[2.5, 0.75, 0.5], [1.0, 0.0, 0.0]], dtype=F64))
    assert torch.equal(ret, torch.tensor([[3.0, 2.0, 2.0], [3.0, 0.0, 0.0]], dtype=F64))
