"""Expert (oracle) play: demonstrations for the supervised warm start and an upper bound."""
from __future__ import annotations

import random
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from envs.base import TextEnv
from src.rollout.prompts import PromptBuilder


_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)", re.S)


def miscounted(response: str) -> Optional[str]:
    """The response with the last number of its action raised by one (``go to countertop 3`` ->
    ``go to countertop 4``): the mistake of a policy that copied the expert's way of counting through a
    room's receptacles but not where the count ends. None when the action names no number."""
    start, end = response.rfind("<action>"), response.rfind("</action>")
    if start < 0 or end < start:
        return None
    action = response[start + len("<action>"):end]
    if not _LAST_NUMBER.search(action):
        return None
    bumped = _LAST_NUMBER.sub(lambda m: str(int(m.group(1)) + 1), action, count=1)
    return f"{response[:start]}<action>{bumped}</action>{response[end + len('</action>'):]}"


def noisy_response(rng: random.Random, admissible: Optional[Sequence[str]], previous: Optional[str],
                   expert: str = "") -> Optional[str]:
    """A plausible mistake to execute instead of the expert's response ``expert``: repeating the previous
    response (what a greedy policy that failed once does), the expert's own command miscounted
    (:func:`miscounted`) or, where the task lists its admissible actions, a random one of them; None when
    none exists (the first step of a task without an action list or numbers)."""
    choices = {}
    if previous is not None:
        choices["repeat"] = previous
    wrong_number = miscounted(expert)
    if wrong_number is not None:
        choices["miscount"] = wrong_number
    if admissible:
        choices["random"] = f"<think>try something else</think><action>{rng.choice(list(admissible))}</action>"
    if not choices:
        return None
    return choices[rng.choice(sorted(choices))]


def expert_demonstrations(
    envs: Sequence[TextEnv],
    resets: Sequence[Dict[str, Any]],
    prompt_builder: PromptBuilder,
    tokenizer,
    noise: float = 0.0,
    seed: int = 0,
) -> Tuple[List[Tuple[str, str]], float]:
    """Play each env once with its expert; returns the (prompt, response) pair of every step (the
    prompt rendered exactly as the sampler renders it for the policy) and the expert's success rate.

    With ``noise`` > 0 (DART-style noise injection), each step records the expert's response but, with
    that probability, *executes* a mistake instead (:func:`noisy_response`). The demonstrations then
    also cover states the expert never reaches by itself, such as the one after a failed command, so
    the policy learns to recover from its own errors instead of repeating them. The expert must act
    correctly from any state (the environments' experts do)."""
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"warm-start noise must be in [0, 1), got {noise}")
    rng = random.Random(f"expert-noise/{seed}")
    pairs: List[Tuple[str, str]] = []
    wins = 0
    for env, kw in zip(envs, resets):
        obs, info = env.reset(**kw)
        instruction, admissible = info.get("instruction", ""), info.get("admissible_actions")
        history: List[Tuple[str, str]] = []
        previous: Optional[str] = None
        for _ in range(env.max_steps):
            response = env.expert_response()
            pairs.append((prompt_builder.render(tokenizer, instruction, obs, history, admissible), response))
            executed = response
            if noise and rng.random() < noise:
                executed = noisy_response(rng, admissible, previous, response) or response
            next_obs, _, terminated, truncated, step_info = env.step(executed)
            history.append((obs, step_info.get("action", "")))
            obs, admissible, previous = next_obs, step_info.get("admissible_actions", admissible), executed
            if terminated or truncated:
                wins += bool(step_info.get("won", False))
                break
    return pairs, wins / max(len(envs), 1)
