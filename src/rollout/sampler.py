"""Batched multi-turn rollouts: every active episode's prompt is built, all responses are sampled
in one batch by the rollout backend (``src.policy.backends``), and each agent step becomes one training row.

With the default backend (``hf``) the sampler keeps, for every generated token, its log-prob and the entropy
of the distribution it was sampled from (at the sampling temperature), so EMPG's step entropy and PPO's old
log-probs need no second forward pass; a backend without them (``vllm``) leaves them to the trainer.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from envs.base import TextEnv
from src.policy.backends import HFBackend, RolloutBackend
from src.policy.model import Policy
from src.rollout.env_guard import EnvGuard
from src.rollout.prompts import PromptBuilder
from src.utils.checks import require_number


@dataclass
class StepRecord:
    """One agent step = one training row."""

    group_id: int  # episodes sharing one reset (the GRPO group)
    traj_id: int  # index of the episode in this rollout
    step_idx: int  # 0-based step within the episode
    prompt_ids: List[int]
    response_ids: List[int]
    old_log_probs: List[float]  # per response token, at the sampling temperature
    token_entropies: List[float]  # per response token, entropy of the sampling distribution
    reward: float  # the environment's task reward for this step (no penalty in it)
    done: bool  # episode ended at this step (terminated or truncated)
    action_valid: bool
    anchor_obs: str  # the raw observation the step answered (GiGPO's anchor)
    response_text: str
    penalty: float = 0.0  # the environment's invalid-action penalty of this step (info["penalty"]), row-local
    action: str = ""  # the action the environment parsed from the response and executed (info["action"])
    feedback: str = ""  # the observation the environment answered with
    expert: bool = False  # the environment's expert wrote the response (off-policy guidance), not the policy
    #: what the environment's expert would have answered in this state (``play(label=True)``: DAgger); "" = not asked
    expert_label: str = ""

    def training_row(self, advantage: float, base_advantage: Optional[float] = None, old_value: float = 0.0,
                     value_target: float = 0.0) -> Dict[str, Any]:
        """The row ``collate_steps`` batches: this step's tokens, old log-probs, its advantage, the
        base estimator's advantage before EMPG (defaults to ``advantage``), its step entropy and,
        for PPO + GAE, the value at rollout time and the value target."""
        return {"prompt_ids": self.prompt_ids, "response_ids": self.response_ids,
                "old_log_probs": self.old_log_probs, "advantage": float(advantage),
                "base_advantage": float(advantage if base_advantage is None else base_advantage),
                "step_entropy": self.step_entropy, "old_value": float(old_value), "value_target": float(value_target)}

    @property
    def step_entropy(self) -> float:
        """Mean token entropy of the response (EMPG's H_t)."""
        return sum(self.token_entropies) / max(len(self.token_entropies), 1)


@dataclass
class EpisodeRecord:
    group_id: int
    traj_id: int
    task_id: Any
    num_steps: int
    episode_return: float
    won: bool
    num_invalid: int
    metrics: Dict[str, float] = field(default_factory=dict)
    #: the task's kind, for filtering episodes: ALFWorld's task type, Deep Search's dataset family
    task_type: str = ""
    expert: bool = False  # played by the environment's expert (``MultiTurnSampler.play(expert=...)``)
    #: why the environment failed this episode (its reset or a step raised or timed out); "" = it did not.
    #: Such an episode ends there, its steps are dropped from the rollout and it counts in no mean.
    error: str = ""


@dataclass
class RolloutResult:
    steps: List[StepRecord]
    episodes: List[EpisodeRecord]
    seconds: float = 0.0
    #: of ``seconds``: in the backend's ``generate`` (sampling responses) and in the environments' reset / step
    #: calls; the rest is prompt rendering, tokenisation and bookkeeping
    generation_seconds: float = 0.0
    env_seconds: float = 0.0
    generated_tokens: int = 0
    truncated_prompts: int = 0
    #: indices (into the ``envs`` passed to ``play``) of the environments that failed, with the error
    env_errors: List[Tuple[int, str]] = field(default_factory=list)

    def summary(self) -> Dict[str, float]:
        """Batch means of the policy's episode metrics (success, return, length, invalid rate, task
        metrics); episodes the expert played count only in ``expert_episodes`` / ``expert_success``,
        episodes the environment failed only in ``env_errors``."""
        episodes = [e for e in self.episodes if not e.expert and not e.error]
        steps = [s for s in self.steps if not s.expert]
        n_eps, n_steps = max(len(episodes), 1), max(len(steps), 1)
        out = {
            "success": sum(e.won for e in episodes) / n_eps,
            "episode_return": sum(e.episode_return for e in episodes) / n_eps,
            "episode_length": sum(e.num_steps for e in episodes) / n_eps,
            "invalid_action_rate": sum(not s.action_valid for s in steps) / n_steps,
            "response_length": sum(len(s.response_ids) for s in steps) / n_steps,
            "step_entropy": sum(s.step_entropy for s in steps) / n_steps,
            "env_errors": float(sum(bool(e.error) for e in self.episodes)),
        }
        keys = sorted({k for e in episodes for k in e.metrics})
        for k in keys:
            vals = [e.metrics[k] for e in episodes if k in e.metrics]
            out[f"task/{k}"] = sum(vals) / max(len(vals), 1)
        experts = [e for e in self.episodes if e.expert]
        if experts:
            out["expert_episodes"] = float(len(experts))
            out["expert_success"] = sum(e.won for e in experts) / len(experts)
        return out


def concat_rollouts(results: Sequence[RolloutResult]) -> RolloutResult:
    """Several rollouts as one, trajectories renumbered in order so ``traj_id`` stays unique (each
    ``play`` numbers its episodes from 0); group ids are kept."""
    steps: List[StepRecord] = []
    episodes: List[EpisodeRecord] = []
    for r in results:
        offset = len(episodes)
        episodes += [replace(e, traj_id=e.traj_id + offset) for e in r.episodes]
        steps += [replace(s, traj_id=s.traj_id + offset) for s in r.steps]
    return RolloutResult(steps=steps, episodes=episodes, seconds=sum(r.seconds for r in results),
                         generation_seconds=sum(r.generation_seconds for r in results),
                         env_seconds=sum(r.env_seconds for r in results),
                         generated_tokens=sum(r.generated_tokens for r in results),
                         truncated_prompts=sum(r.truncated_prompts for r in results))


@dataclass
class MultiTurnSampler:
    """Plays a batch of environments with a policy.

    Args:
        prompt_builder: renders instruction + history + observation into the chat prompt.
        max_new_tokens: cap on one response's length (tokens); the stop token ends it earlier.
        max_prompt_tokens: prompts longer than this keep their last ``max_prompt_tokens`` tokens.
        temperature: sampling temperature for training rollouts (log-probs and entropies are taken
            at this temperature; the loss uses the same one).
        show_progress: a rich progress bar over turns while rolling out.
        backend: what samples the responses (``rollout.backend``: the in-process ``hf`` sampler, or ``vllm``).
    """

    prompt_builder: PromptBuilder
    max_new_tokens: int = 64
    max_prompt_tokens: int = 1024
    temperature: float = 1.0
    show_progress: bool = True
    backend: RolloutBackend = field(default_factory=HFBackend)

    def __post_init__(self) -> None:
        require_number("task.sampler.max_new_tokens", self.max_new_tokens, integer=True, low=1)
        require_number("task.sampler.max_prompt_tokens", self.max_prompt_tokens, integer=True, low=1)
        require_number("task.sampler.temperature", self.temperature, low=0.0, low_open=True)

    @torch.no_grad()
    def play(
        self,
        policy: Policy,
        envs: Sequence[TextEnv],
        resets: Sequence[Dict[str, Any]],
        group_ids: Sequence[int],
        *,
        greedy: bool = False,
        temperature: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        expert: Optional[Sequence[bool]] = None,
        guard: Optional[EnvGuard] = None,
        label: bool = False,
    ) -> RolloutResult:
        """Play one episode in each env. ``resets[i]`` are the kwargs of ``envs[i].reset`` (seed /
        options: give group members identical resets); episodes run until every one has ended.

        ``temperature``: sample at this temperature instead of ``self.temperature`` (validation's own; the
        recorded log-probs and entropies are then taken at it too).

        ``expert[i]``: env i is played by its expert (``env.expert_response()``) instead of the policy.
        Its steps carry the expert's response tokens (and the end-of-turn token) with *empty*
        ``old_log_probs`` / ``token_entropies``: the policy's scores of them are the caller's to add
        (``RolloutDataModule`` scores them with a forward pass).

        ``guard`` runs every ``reset`` and ``step`` (default: inline, exceptions caught): an environment
        that raises or times out ends only its own episode, which is recorded with its ``error`` and
        without steps; ``RolloutResult.env_errors`` lists the failed environments, which the caller
        must replace before playing them again.

        ``label``: every policy-played step also records ``env.expert_response()`` for the state it answered
        (``StepRecord.expert_label``), before the policy's own action is executed: DAgger's labels of the
        states the policy reaches."""
        if not (len(envs) == len(resets) == len(group_ids)):
            raise ValueError(f"envs ({len(envs)}), resets ({len(resets)}), group_ids ({len(group_ids)}) differ")
        expert = [bool(x) for x in expert] if expert is not None else [False] * len(envs)
        if len(expert) != len(envs):
            raise ValueError(f"expert ({len(expert)}) and envs ({len(envs)}) differ")
        temperature = self.temperature if temperature is None else float(temperature)
        start = time.perf_counter()
        tokenizer = policy.tokenizer
        was_training = policy.model.training
        policy.model.eval()
        self.backend.prepare(policy)

        n = len(envs)
        guard = guard or EnvGuard()
        steps: List[StepRecord] = []
        episodes: List[Optional[EpisodeRecord]] = [None] * n
        result = RolloutResult(steps=steps, episodes=[])
        observations: List[str] = [""] * n
        infos: List[Dict[str, Any]] = [{} for _ in range(n)]
        active = [True] * n
        env_start = time.perf_counter()
        for i, (env, kw) in enumerate(zip(envs, resets)):
            answer, error = guard(env.reset, **kw)
            if error is None:
                observations[i], infos[i] = answer[0], dict(answer[1])
            else:
                active[i] = False
                result.env_errors.append((i, f"{type(env).__name__}.reset: {error}"))
                episodes[i] = EpisodeRecord(int(group_ids[i]), i, None, 0, 0.0, False, 0, expert=expert[i],
                                            error=result.env_errors[-1][1])
        result.env_seconds += time.perf_counter() - env_start
        instructions = [info.get("instruction", "") for info in infos]
        histories: List[List[Tuple[str, str]]] = [[] for _ in range(n)]
        returns, invalid = [0.0] * n, [0] * n
        max_turns = max((env.max_steps for env in envs), default=0)

        progress = self._progress() if self.show_progress else None
        with progress or nullcontext():
            task = progress.add_task("rollout", total=max_turns, active=n) if progress else None
            for turn in range(max_turns):
                idx = [i for i in range(n) if active[i]]
                if not idx:
                    break
                prompts = [
                    self.prompt_builder.render(
                        tokenizer, instructions[i], observations[i], histories[i], infos[i].get("admissible_actions")
                    )
                    for i in idx
                ]
                prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
                for j, ids in enumerate(prompt_ids):
                    if len(ids) > self.max_prompt_tokens:
                        prompt_ids[j] = ids[-self.max_prompt_tokens:]
                        result.truncated_prompts += 1
                sampled = [j for j, i in enumerate(idx) if not expert[i]]
                gen_start = time.perf_counter()
                generated = self.backend.generate(policy, [prompt_ids[j] for j in sampled], self.max_new_tokens,
                                                  temperature, greedy=greedy, generator=generator)
                result.generation_seconds += time.perf_counter() - gen_start
                responses: List[List[int]] = [[] for _ in idx]
                log_probs: List[List[float]] = [[] for _ in idx]
                entropies: List[List[float]] = [[] for _ in idx]
                for k, j in enumerate(sampled):
                    responses[j], log_probs[j], entropies[j] = generated[0][k], generated[1][k], generated[2][k]
                texts = {}
                for j, i in enumerate(idx):
                    if expert[i]:
                        texts[j] = envs[i].expert_response()
                        responses[j] = tokenizer(texts[j], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
                for j, i in enumerate(idx):
                    text = texts[j] if expert[i] else tokenizer.decode(responses[j], skip_special_tokens=True)
                    expert_label = envs[i].expert_response() if label and not expert[i] else ""
                    env_start = time.perf_counter()
                    answer, error = guard(envs[i].step, text)
                    result.env_seconds += time.perf_counter() - env_start
                    if error is not None:
                        active[i] = False
                        result.env_errors.append((i, f"{type(envs[i]).__name__}.step: {error}"))
                        episodes[i] = EpisodeRecord(
                            int(group_ids[i]), i, infos[i].get("task_id"), turn + 1, returns[i], False, invalid[i],
                            task_type=_task_type(infos[i]), expert=expert[i], error=result.env_errors[-1][1])
                        continue
                    obs, reward, terminated, truncated, info = answer
                    done = bool(terminated or truncated)
                    valid = bool(info.get("action_valid", True))
                    returns[i] += float(reward)
                    invalid[i] += int(not valid)
                    steps.append(StepRecord(
                        group_id=int(group_ids[i]), traj_id=i, step_idx=turn, prompt_ids=prompt_ids[j],
                        response_ids=responses[j], old_log_probs=log_probs[j], token_entropies=entropies[j],
                        reward=float(reward), done=done, action_valid=valid, anchor_obs=observations[i],
                        response_text=text, penalty=float(info.get("penalty", 0.0)),
                        action=str(info.get("action", "")), feedback=obs, expert=expert[i], expert_label=expert_label,
                    ))
                    result.generated_tokens += 0 if expert[i] else len(responses[j])
                    histories[i].append((observations[i], info.get("action", "")))
                    observations[i] = obs
                    if "admissible_actions" in info:
                        infos[i]["admissible_actions"] = info["admissible_actions"]
                    if done:
                        active[i] = False
                        episodes[i] = EpisodeRecord(
                            group_id=int(group_ids[i]), traj_id=i, task_id=infos[i].get("task_id"),
                            num_steps=turn + 1, episode_return=returns[i], won=bool(info.get("won", False)),
                            num_invalid=invalid[i], metrics=dict(info.get("metrics", {})),
                            task_type=_task_type(infos[i]), expert=expert[i],
                        )
                if progress:
                    progress.update(task, advance=1, active=sum(active))
        # Environments end every episode by their own max_steps; this guards a misbehaving one.
        for i in range(n):
            if episodes[i] is None:
                episodes[i] = EpisodeRecord(int(group_ids[i]), i, infos[i].get("task_id"), len(histories[i]),
                                            returns[i], False, invalid[i], task_type=_task_type(infos[i]),
                                            expert=expert[i])
        result.episodes = [e for e in episodes if e is not None]
        failed = {i for i, _ in result.env_errors}
        result.steps = [s for s in steps if s.traj_id not in failed]  # a failed episode's rows train nothing
        result.seconds = time.perf_counter() - start
        policy.model.train(was_training)
        return result

    @staticmethod
    def _progress() -> Progress:
        return Progress(
            TextColumn("[bold blue]rollout"), BarColumn(), TextColumn("turn {task.completed}/{task.total}"),
            TextColumn("active episodes: {task.fields[active]}"), TimeElapsedColumn(), transient=True,
        )


def _task_type(reset_info: Dict[str, Any]) -> str:
    return str(reset_info.get("task_type") or reset_info.get("family") or "")
