"""Expert (oracle) play: demonstrations for the supervised warm start and an upper bound."""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from envs.base import TextEnv
from src.rollout.prompts import PromptBuilder


def expert_demonstrations(
    envs: Sequence[TextEnv],
    resets: Sequence[Dict[str, Any]],
    prompt_builder: PromptBuilder,
    tokenizer,
) -> Tuple[List[Tuple[str, str]], float]:
    """Play each env once with its expert; returns the (prompt, response) pair of every step (the
    prompt rendered exactly as the sampler renders it for the policy) and the expert's success rate."""
    pairs: List[Tuple[str, str]] = []
    wins = 0
    for env, kw in zip(envs, resets):
        obs, info = env.reset(**kw)
        instruction, admissible = info.get("instruction", ""), info.get("admissible_actions")
        history: List[Tuple[str, str]] = []
        for _ in range(env.max_steps):
            response = env.expert_response()
            pairs.append((prompt_builder.render(tokenizer, instruction, obs, history, admissible), response))
            next_obs, _, terminated, truncated, step_info = env.step(response)
            history.append((obs, step_info.get("action", "")))
            obs, admissible = next_obs, step_info.get("admissible_actions", admissible)
            if terminated or truncated:
                wins += bool(step_info.get("won", False))
                break
    return pairs, wins / max(len(envs), 1)
