"""WebShop environment speed at 1k / 10k / 100k generated products.

    .venv/bin/python benchmarks/webshop_env.py [--sizes 1000 10000 100000] [--episodes 100] [--queries 200]

For each catalogue size (generated on the fly, nothing is written): the time to build the shop
(catalogue + goals + BM25 index), the mean / p95 latency of one search (top 50) over the expert's
queries for validation goals, and env steps per second while the expert plays validation goals
(time spent inside ``env.step`` only; the expert's own planning is not counted).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.webshop import WebShopEnv  # noqa: E402
from envs.webshop.env import expert_query  # noqa: E402


def bench(num_products: int, episodes: int, queries: int) -> dict:
    start = time.perf_counter()
    env = WebShopEnv(split="val", num_products=num_products)
    build_s = time.perf_counter() - start

    goals = env.goals[:queries]
    latencies = []
    for goal in goals:
        q = expert_query(goal)
        t = time.perf_counter()
        env.shop.engine.search(q)
        latencies.append(time.perf_counter() - t)

    step_s, steps, wins = 0.0, 0, 0
    for i in range(episodes):
        env.reset(options={"index": i})
        for _ in range(env.max_steps):
            response = env.expert_response()
            t = time.perf_counter()
            _, _, terminated, truncated, info = env.step(response)
            step_s += time.perf_counter() - t
            steps += 1
            if terminated or truncated:
                wins += int(info["won"])
                break
    latencies.sort()
    return {
        "products": len(env.shop.products), "goals": len(env.shop.goals), "build_s": build_s,
        "search_ms": 1000 * statistics.mean(latencies), "search_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "steps_per_s": steps / step_s, "expert_success": wins / episodes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    header = f"{'products':>9} {'goals':>8} {'build s':>8} {'search ms':>10} {'p95 ms':>8} {'steps/s':>9} {'expert':>7}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        r = bench(n, args.episodes, args.queries)
        print(f"{r['products']:>9} {r['goals']:>8} {r['build_s']:>8.1f} {r['search_ms']:>10.2f} {r['search_p95_ms']:>8.2f} "
              f"{r['steps_per_s']:>9.0f} {r['expert_success']:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
