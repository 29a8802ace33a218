"""The one interface every task implements: text in, text out, gymnasium's signatures.

An environment plays one episode at a time. ``step`` receives the model's *whole* response; the
environment extracts the action in its own task format, and a malformed or impossible action is an
invalid step (feedback text, a configurable penalty, ``info["action_valid"] = False``), never an
exception. Batched play is the sampler's job (``src/rollout``), not the environment's.
"""
from __future__ import annotations

import abc
import random
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

StepResult = Tuple[str, float, bool, bool, Dict[str, Any]]


class TextEnv(abc.ABC):
    """Base class of all text environments.

    Required ``info`` keys:
      * ``reset``: ``instruction`` (the task instruction shown at every turn), ``task_id``.
      * ``step``: ``action`` (the extracted action text, ``""`` if none), ``action_valid`` (bool),
        and when the episode ends (terminated or truncated) ``won`` and ``success`` (bool, equal)
        plus ``metrics`` (dict of floats, task metrics of the finished episode).
      * optional ``admissible_actions`` (list of str) where the task has a finite action set.
    """

    #: Registry name, set by :func:`envs.registry.register_env`.
    name: str = ""
    #: Hard cap on agent steps per episode.
    max_steps: int = 1
    #: True when no episode is running (before the first reset, after an episode ends).
    _done: bool = True

    @abc.abstractmethod
    def reset(self, seed: Optional[int] = None, options: Optional[dict] = None) -> Tuple[str, Dict[str, Any]]:
        """Start an episode. ``options={"index": i}`` selects task ``i`` of the split
        (deterministically); otherwise ``seed`` (or the env's own RNG) draws one."""

    def task_index(self, seed: Optional[int], options: Optional[dict], rng: random.Random) -> int:
        """The task a ``reset`` selects: ``options["index"]`` (mod ``num_tasks()``), else one drawn
        with ``seed``, else one drawn from the env's own ``rng``."""
        if options and "index" in options:
            return int(options["index"]) % self.num_tasks()
        if seed is not None:
            return random.Random(seed).randrange(self.num_tasks())
        return rng.randrange(self.num_tasks())

    def _begin_step(self, response: object, started: bool) -> str:
        """The opening every ``step`` shares: refuse a step before ``reset()`` (``started`` false) or
        after the episode ended (``self._done``), and read a non-string response as text (None: "")."""
        name = type(self).__name__
        if not started:
            raise RuntimeError(f"{name}.step called before reset()")
        if self._done:
            raise RuntimeError(f"{name}.step called after the episode ended; call reset() first")
        return response if isinstance(response, str) else ("" if response is None else str(response))

    @abc.abstractmethod
    def step(self, response: str) -> StepResult:
        """Apply the model's whole response; returns (observation, reward, terminated, truncated, info)."""

    @abc.abstractmethod
    def expert_response(self) -> str:
        """The oracle's full response text (same format the model must write) for the current state."""

    @abc.abstractmethod
    def num_tasks(self) -> int:
        """Number of distinct tasks (questions, games, goals) in this environment's split."""

    @classmethod
    def tokenizer_corpus(cls, **cfg: Any) -> Iterable[str]:
        """Texts of this task (documents, questions, prompts, expert responses) for training the
        tiny local tokenizer. Default: nothing task-specific."""
        return ()

    @classmethod
    def tokenizer_atoms(cls, **cfg: Any) -> Sequence[str]:
        """Names the tiny tokenizer may keep whole, one token each (``model.policy.atom_tokens``): strings
        the agent must copy exactly that BPE would cut into pieces of no meaning (WebShop's product ids).
        Lowercase. Default: none."""
        return ()

    @classmethod
    def summary_metrics(cls, metrics: Mapping[str, float]) -> Dict[str, float]:
        """Metrics derived from the episode means of a whole validation pass (e.g. averages over
        dataset families), logged beside them. Default: none."""
        return {}

    @classmethod
    def report(cls, metrics: Mapping[str, float]) -> str:
        """The task's results table as its papers print it, from episode-mean metrics keyed as the
        rollout summary names them (``success``, ``episode_return``, ``task/<metric>``...).
        ``src/eval.py`` prints it. Default: no task-specific table."""
        return ""
