"""``deepsearch``: answer questions about a fictional world by searching a BM25 index.

Protocol (after Search-R1 / verl-agent's search env): each response either searches with
``<search>query</search>`` (the top-k passages come back inside ``<information>…</information>``) or
ends the episode with ``<answer>…</answer>``, scored by normalised exact match. A response with no
action, with both tags, with more than one of a tag, or with an empty action is invalid: feedback
text, ``-invalid_action_penalty``, and the turn still counts. After ``max_turns`` turns without an
answer the episode is truncated; a search on the last turn is not executed.
"""
from __future__ import annotations

import random
import re
from typing import Any, Dict, Iterable, Optional, Tuple

from envs.base import StepResult, TextEnv
from envs.deepsearch.retriever import cached_retriever, format_docs
from envs.deepsearch.scoring import exact_match, f1_score
from envs.deepsearch.world import DEFAULT_NUM_ENTITIES, SPLITS, get_world
from envs.registry import register_env

INSTRUCTION = (
    "Answer the question. First reason inside <think> </think>. To look something up, write "
    "<search> query </search> and the results will appear inside <information> </information>. "
    "You can search several times. When you know the answer, give only the short answer inside "
    "<answer> </answer>."
)
INVALID_FEEDBACK = (
    "Your previous response was invalid. To search, put the query between <search> and </search>. "
    "To give the final answer, put it between <answer> and </answer>."
)
TURN_LIMIT_TEXT = "Turn limit reached."
NO_RESULTS_TEXT = "No results found."

_TAG = re.compile(r"<(/?)(search|answer|think)\s*>", re.IGNORECASE)


def parse_action(response: str, require_think: bool = False) -> Tuple[str, str, bool]:
    """``(kind, content, valid)`` with kind ``"search"``, ``"answer"`` or ``""``.

    Valid iff the whole response holds exactly one well-formed ``<search>…</search>`` or exactly one
    ``<answer>…</answer>`` (no other search/answer tag at all), its stripped content is non-empty, and,
    with ``require_think``, a ``<think>…</think>`` closes before it opens.
    """
    tags = [(m.group(1) == "/", m.group(2).lower(), m.start(), m.end()) for m in _TAG.finditer(response)]
    action_tags = [t for t in tags if t[1] != "think"]
    if len(action_tags) != 2:
        return "", "", False
    (close1, kind1, _, end1), (close2, kind2, start2, _) = action_tags
    if close1 or not close2 or kind1 != kind2:
        return "", "", False
    content = response[end1:start2].strip()
    if not content:
        return "", "", False
    if require_think:
        open_at = action_tags[0][2]
        think_open = [t for t in tags if t[1] == "think" and not t[0] and t[3] <= open_at]
        think_close = [t for t in tags if t[1] == "think" and t[0] and t[3] <= open_at]
        if not think_open or not think_close or think_close[-1][2] < think_open[0][3]:
            return "", "", False
    return kind1, content, True


@register_env("deepsearch")
class DeepSearchEnv(TextEnv):
    """Multi-turn search QA over :func:`envs.deepsearch.world.build_world` ``(world_seed, num_entities)``."""

    def __init__(self, split: str = "train", seed: int = 0, *, world_seed: int = 0,
                 num_entities: int = DEFAULT_NUM_ENTITIES, max_turns: int = 4, top_k: int = 3,
                 invalid_action_penalty: float = 0.01, require_think: bool = False) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if max_turns < 1:
            raise ValueError("max_turns must be >= 1")
        self.split = split
        self.world = get_world(world_seed, num_entities)
        self.retriever = cached_retriever((int(world_seed), int(num_entities)), self.world.corpus, top_k)
        self.tasks = self.world.questions(split)
        self.max_turns = int(max_turns)
        self.max_steps = self.max_turns
        self.top_k = int(top_k)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.require_think = bool(require_think)
        self._rng = random.Random(seed)
        self._task: Optional[dict] = None
        self._done = True
        self.turn = 0

    # ------------------------------------------------------------------ episode
    def num_tasks(self) -> int:
        return len(self.tasks)

    def reset(self, seed: Optional[int] = None, options: Optional[dict] = None) -> Tuple[str, Dict[str, Any]]:
        self._task = self.tasks[self.task_index(seed, options, self._rng)]
        self._done = False
        self.turn = 0
        self._num_searches = 0
        self._invalid = 0
        obs = f"Question: {self._task['question']}"
        info = {
            # the question sits in the instruction too: it must stay in every prompt even after the
            # first observation leaves the sampler's history window
            "instruction": f"{INSTRUCTION}\n{obs}",
            "task_id": self._task["id"],
            "question": self._task["question"],
            "golden_answers": list(self._task["golden_answers"]),
            "anchor_obs": obs,
        }
        return obs, info

    def step(self, response: str) -> StepResult:
        if self._task is None:
            raise RuntimeError("DeepSearchEnv.step called before reset()")
        if self._done:
            raise RuntimeError("DeepSearchEnv.step called after the episode ended; call reset() first")
        if not isinstance(response, str):
            response = "" if response is None else str(response)
        self.turn += 1
        kind, content, valid = parse_action(response, self.require_think)
        last_turn = self.turn >= self.max_turns
        reward = 0.0
        terminated = truncated = False
        answer_em = answer_f1 = 0.0
        answered = False

        if not valid:
            self._invalid += 1
            reward = -self.invalid_action_penalty
            obs = INVALID_FEEDBACK
            action = ""
        elif kind == "answer":
            action = f"<answer>{content}</answer>"
            answered = terminated = True
            answer_em = exact_match(content, self._task["golden_answers"])
            answer_f1 = f1_score(content, self._task["golden_answers"])
            reward = answer_em
            obs = ""
        else:
            action = f"<search>{content}</search>"
            if last_turn:
                obs = TURN_LIMIT_TEXT  # the search on the last turn is not executed
            else:
                self._num_searches += 1
                hits = self.retriever.search(content, k=self.top_k)
                obs = "<information>" + (format_docs(hits) if hits else NO_RESULTS_TEXT) + "</information>"

        if not terminated and last_turn:
            truncated = True
            obs = TURN_LIMIT_TEXT
        info: Dict[str, Any] = {"action": action, "action_valid": valid, "anchor_obs": obs, "turn": self.turn}
        if terminated or truncated:
            self._done = True
            won = answer_em == 1.0
            info.update(won=won, success=won, metrics={
                "em": answer_em,
                "f1": answer_f1,
                "answered": float(answered),
                "num_searches": float(self._num_searches),
                "invalid_actions": float(self._invalid),
            })
        return obs, float(reward), terminated, truncated, info

    # ------------------------------------------------------------------ oracle
    def expert_response(self) -> str:
        if self._task is None:
            raise RuntimeError("DeepSearchEnv.expert_response called before reset()")
        return expert_response_for(self._task, self.turn, self.max_turns)

    @classmethod
    def tokenizer_corpus(cls, **cfg: Any) -> Iterable[str]:
        world = get_world(int(cfg.get("world_seed", 0)), int(cfg.get("num_entities", DEFAULT_NUM_ENTITIES)))
        max_turns = int(cfg.get("max_turns", 4))
        yield INSTRUCTION
        yield INVALID_FEEDBACK
        yield TURN_LIMIT_TEXT
        yield NO_RESULTS_TEXT
        for doc in world.corpus:
            yield doc["contents"]
        by_name = {e.name: i for i, e in enumerate(world.entities)}
        for q in world.questions():
            yield f"Question: {q['question']}"
            docs = [world.corpus[by_name[name]] for name in q["chain"]]
            yield "<information>" + format_docs(docs) + "</information>"
            for turn in range(len(q["queries"]) + 1):
                yield expert_response_for(q, turn, max_turns)


def expert_response_for(task: dict, turn: int, max_turns: int) -> str:
    """The oracle's response after ``turn`` turns: follow the plan's queries, then answer."""
    queries = task["queries"]
    if turn < len(queries) and turn + 1 < max_turns:
        return f"<think>search {queries[turn]}</think><search>{queries[turn]}</search>"
    return f"<think>answer found</think><answer>{task['golden_answers'][0]}</answer>"
