"""Why a Deep Search agent misses in-domain questions: reads a run's recorded validation episodes
(``<run>/episodes/epoch_<k>_val.jsonl``; record them all with ``record_episodes=-1``) and sorts every
missed NQ / HotpotQA question by where it went wrong, against the gold answers of the test split.

    python scripts/deepsearch_misses.py logs/train/runs/<run>/episodes/epoch_0_val.jsonl

Classes: the gold answer was never in a retrieved passage (search); it was retrieved but the agent's
``<think>`` names something else (reading); it is in the agent's own ``<think>`` but the ``<answer>``
differs or never comes (copying).
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from envs.deepsearch.env import DeepSearchEnv  # noqa: E402

IN_DOMAIN = ("nq", "hotpotqa")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)


def classify(episode: Mapping, gold: List[str]) -> str:
    """The class of one episode (``won`` for a hit)."""
    if episode["won"]:
        return "won"
    passages = " ".join(s.get("feedback") or "" for s in episode["steps"]).lower()
    thoughts = " ".join(_THINK.findall(" ".join(s["response"] for s in episode["steps"]))).lower()
    if not any(g in passages for g in gold):
        return "gold never retrieved (search)"
    if any(g in thoughts for g in gold):
        return "gold in its own <think>, another or no <answer> (copying)"
    return "gold retrieved, <think> names something else (reading)"


def tally(episodes: Iterable[Mapping], gold: Mapping[str, List[str]]) -> Dict[str, int]:
    return dict(collections.Counter(classify(e, gold[e["task_id"]]) for e in episodes
                                    if e["task_type"] in IN_DOMAIN).most_common())


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("episodes", type=Path, help="a recorded validation file (epoch_<k>_val.jsonl)")
    args = parser.parse_args(argv)
    env = DeepSearchEnv(split="test")
    gold = {t["id"]: [g.lower() for g in t["golden_answers"]] for t in env.tasks}
    episodes = [json.loads(line) for line in open(args.episodes)]
    counts = tally(episodes, gold)
    total = sum(counts.values())
    print(f"{total} in-domain episodes")
    for name, n in counts.items():
        print(f"{n:4d} ({100 * n / total:.0f}%)  {name}")


if __name__ == "__main__":
    main()
