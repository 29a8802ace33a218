"""Seeded synthetic rollouts: episodes with random token ids, rewards and entropies, no model or
environment involved. For benchmarks at sizes no real rollout on a laptop reaches, and for tests
that need the exact same batch in several processes (single device vs DDP)."""
from __future__ import annotations

import random
from typing import List

from src.rollout.sampler import EpisodeRecord, RolloutResult, StepRecord


def synthetic_rollout(
    num_groups: int,
    group_size: int,
    max_steps: int,
    vocab_size: int,
    *,
    seed: int = 0,
    prompt_len: int = 24,
    response_len: int = 8,
    success_rate: float = 0.5,
    first_group: int = 0,
    fixed_length: bool = False,
) -> RolloutResult:
    """A rollout of ``num_groups x group_size`` episodes.

    Every episode has 1..``max_steps`` steps (exactly ``max_steps`` with ``fixed_length``); each
    step has a random prompt of ``prompt_len`` tokens (ids 3..vocab_size-1, clear of the usual
    special ids), a response of 1..``response_len`` tokens with log-probs in (-5, 0) and entropies
    in (0, 3), and reward 0 except the last step's, which is 1 with probability ``success_rate``.
    Members of a group answer the same first observation (a shared anchor for GiGPO). Group ids
    start at ``first_group``.
    """
    rng = random.Random(seed)
    steps: List[StepRecord] = []
    episodes: List[EpisodeRecord] = []
    for g in range(num_groups):
        gid = first_group + g
        for _ in range(group_size):
            traj = len(episodes)
            length = max_steps if fixed_length else rng.randint(1, max_steps)
            won = rng.random() < success_rate
            for t in range(length):
                n = response_len if fixed_length else rng.randint(1, response_len)
                last = t == length - 1
                steps.append(StepRecord(
                    group_id=gid, traj_id=traj, step_idx=t,
                    prompt_ids=[rng.randrange(3, vocab_size) for _ in range(prompt_len)],
                    response_ids=[rng.randrange(3, vocab_size) for _ in range(n)],
                    old_log_probs=[-5.0 * rng.random() for _ in range(n)],
                    token_entropies=[3.0 * rng.random() for _ in range(n)],
                    reward=float(won and last), done=last, action_valid=True,
                    anchor_obs=f"group {gid} start" if t == 0 else f"obs {rng.randrange(3)}",
                    response_text="",
                ))
            episodes.append(EpisodeRecord(group_id=gid, traj_id=traj, task_id=gid, num_steps=length,
                                          episode_return=float(won), won=won, num_invalid=0))
    return RolloutResult(steps=steps, episodes=episodes)
