"""Throughput of the simulated ALFWorld: environment steps per second, one env and a batch of envs.

    .venv/bin/python benchmarks/alfworld_sim.py [--steps 20000] [--batch 64] [--random-prob 0.3]

Each step's response is the expert's (with probability ``1 - random_prob``) or a random admissible
command wrapped in the same ``<think>…</think><action>…</action>`` format, so the numbers include
the response parsing, the admissible-list computation, the expert planner and the resets: episodes
that end are reset on the next, newly generated game (the game cache is cleared before each
setting). "single" steps one env; "batch" steps ``--batch`` envs round-robin, as the sampler does
(the simulator is pure Python, so a batch is not faster per step, only larger).
The numbers for the real engine (TextWorld + alfworld from PyPI) will be added next to these.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from typing import List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.alfworld import AlfWorldEnv  # noqa: E402
from envs.alfworld.world import cached_game, generate_game  # noqa: E402


def _response(env: AlfWorldEnv, admissible: List[str], rng: random.Random, random_prob: float) -> str:
    if rng.random() < random_prob:
        return f"<think>explore</think><action>{rng.choice(admissible)}</action>"
    return env.expert_response()


def run(num_envs: int, total_steps: int, random_prob: float, seed: int = 0) -> dict:
    cached_game.cache_clear()  # every setting generates its games afresh
    rng = random.Random(seed)
    envs = [AlfWorldEnv(split="train", seed=seed + i) for i in range(num_envs)]
    next_game = 0
    admissible: List[List[str]] = []
    for env in envs:
        admissible.append(env.reset(options={"index": next_game})[1]["admissible_actions"])
        next_game += 1
    steps = episodes = wins = resets = 0
    start = time.perf_counter()
    while steps < total_steps:
        for i, env in enumerate(envs):
            _, _, terminated, truncated, info = env.step(_response(env, admissible[i], rng, random_prob))
            steps += 1
            admissible[i] = info["admissible_actions"]
            if terminated or truncated:
                episodes += 1
                wins += bool(info["won"])
                admissible[i] = env.reset(options={"index": next_game})[1]["admissible_actions"]
                next_game += 1
                resets += 1
    seconds = time.perf_counter() - start
    return {"envs": num_envs, "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds,
            "episodes": episodes, "success": wins / max(episodes, 1)}


def generation_ms(n: int = 2000) -> float:
    start = time.perf_counter()
    for i in range(n):
        generate_game("train", i)
    return 1000 * (time.perf_counter() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps per setting")
    parser.add_argument("--batch", type=int, default=64, help="envs in the batched setting")
    parser.add_argument("--random-prob", type=float, default=0.3, help="share of random admissible commands")
    args = parser.parse_args()
    rows = [("single", run(1, args.steps, args.random_prob)),
            (f"batch of {args.batch}", run(args.batch, args.steps, args.random_prob))]
    print(f"simulated ALFWorld, {args.steps} steps per setting, {args.random_prob:.0%} random admissible commands")
    print(f"| {'setting':<12} | {'steps/s':>9} | {'ms/step':>8} | {'episodes':>8} | {'success':>7} |")
    print(f"|{'-' * 14}|{'-' * 10}:|{'-' * 9}:|{'-' * 9}:|{'-' * 8}:|")
    for name, r in rows:
        print(f"| {name:<12} | {r['steps_per_s']:>9.0f} | {1000 * r['seconds'] / r['steps']:>8.3f} | "
              f"{r['episodes']:>8d} | {r['success']:>7.1%} |")
    print(f"game generation (part of each reset, cached afterwards): {generation_ms():.3f} ms per game")


if __name__ == "__main__":
    main()
