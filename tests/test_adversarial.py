"""Adversarial model output: random bytes and 100 kB of nested, unclosed tags.

(a) Environment level, every task: each such response, from several states (after reset, mid-episode,
on the last turn) and under both invalid rules, is an invalid step with feedback, raises nothing, and
leaves the environment's state as it was. (b) A full training epoch (``debug=smoke``) on every task
with a policy whose logits are noise, and one that writes a nested-tag string: the epoch completes,
every step the policy takes is invalid (rate 1.0 in training and validation) and leaves the state as
it was. (c) The linear-time parsers that (a) needed give the regexes' results.
"""
from __future__ import annotations

import random
import re
from typing import Any, Callable, Dict, List, Optional

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import envs  # noqa: F401 (registers the tasks)
import src.policy.backends as backends_module
from envs.alfworld.engine import NOTHING_HAPPENS
from envs.alfworld.env import AlfWorldEnv
from envs.deepsearch.env import INVALID_FEEDBACK, NO_ACTION, DeepSearchEnv, Projection, project_action
from envs.registry import make_env
from envs.webshop.env import WebShopEnv, parse_action
from src.train import train

TASKS = ("alfworld", "deepsearch", "webshop")
SIZE = 100_000
#: bytes that break parsers: NUL and other controls, tag and bracket characters, invalid UTF-8 (lone
#: continuation bytes, truncated and overlong lead bytes, bytes never valid in UTF-8)
NASTY = b"\x00\x01\x07\x08\x0b\x0c\x1b\x7f\r\n\t <>/[]\x80\xbf\xc0\xc3\xe2\xed\xf0\xf8\xff"


def random_byte_responses(seed: int = 0) -> List[str]:
    """Random byte strings from 0 bytes to 1 MB, decoded as the sampler's tokenizer decodes (invalid
    UTF-8 replaced), plus a 100 kB one of ``NASTY`` bytes read three ways (replaced, as lone
    surrogates, as Latin-1)."""
    rng = random.Random(seed)
    texts = [rng.randbytes(n).decode("utf-8", errors="replace") for n in (0, 1, 7, 64, 1_000, SIZE, 1_000_000)]
    nasty = bytes(rng.choice(NASTY) for _ in range(SIZE))
    texts += [nasty.decode("utf-8", errors="replace"), nasty.decode("utf-8", errors="surrogateescape"),
              nasty.decode("latin-1")]
    return texts


def cycled(pattern: str, size: int = SIZE) -> str:
    return (pattern * (size // len(pattern) + 1))[:size]


TAGS = ("<think>", "<action>", "<search>", "<answer>", "<information>")
#: 100 kB of nested, unclosed tags. None closes an action block (no ``</action>``, no ``</search>`` or
#: ``</answer>`` after its opening tag) and no 30-character tail reads as a command, so every task's rule
#: calls each one malformed and nothing in it can execute.
TAG_RESPONSES = [
    cycled("".join(TAGS)),  # every protocol tag opened, none closed
    "".join(tag * (SIZE // len(TAGS) // len(tag)) for tag in TAGS),  # each tag nested thousands deep
    cycled("<think>why</think><action><search>q<answer>a<information>{"),  # thoughts closed, actions not
    cycled("</search></answer></information><SEARCH><Answer><ACTION><think>"),  # closing tags first, any case
    cycled("<action>search[red shoes <search>click[buy now <answer>go to cabinet 1 <think>"),  # commands, unclosed
]
ADVERSARIAL = random_byte_responses() + TAG_RESPONSES


# ------------------------------------------------------------------------------------------ the state


def snapshot(env) -> tuple:
    """What an invalid move must leave unchanged, read from the env's game objects: ALFWorld's
    household (positions, contents, open receptacles, object states, what look/inventory say, the
    admissible commands); WebShop's browser (page, query, results, product, options, score, the page
    text, the admissible actions, searches made); Deep Search's question, searches run and the
    actions executed with their observations (a turn without an action counts, as documented)."""
    if isinstance(env, AlfWorldEnv):
        h = env.house
        return h.snapshot(), h.look_text(), h.inventory_text(), tuple(h.admissible_commands())
    if isinstance(env, WebShopEnv):
        b = env.browser
        return (b.page, b.keywords, tuple(b.results), b.page_num, b.asin, b.sub, tuple(sorted(b.options.items())),
                b.score, b.observation(), tuple(b.admissible_actions()), env._searches)
    if isinstance(env, DeepSearchEnv):
        return env._task["id"], env._num_searches, tuple((a, obs) for a, obs in env._history if a.kind)
    raise TypeError(type(env))


def expected_feedback(env, before_obs: str, done: bool) -> str:
    """The documented answer to a malformed response: ALFWorld's ``Nothing happens.``; WebShop's same
    page again (no error text, as the real site); Deep Search's empty observation (verl-agent), or its
    feedback text with ``invalid_feedback``, and nothing once the episode has ended."""
    if isinstance(env, AlfWorldEnv):
        return NOTHING_HAPPENS
    if isinstance(env, WebShopEnv):
        return before_obs
    return INVALID_FEEDBACK if env.invalid_feedback and not done else ""


def play_expert(env, index: int, expert_steps: int) -> Optional[str]:
    """Start task ``index``, take ``expert_steps`` expert steps; the observation reached, or None when
    the episode ended on the way."""
    obs, _ = env.reset(options={"index": index})
    for _ in range(expert_steps):
        obs, _, terminated, truncated, _ = env.step(env.expert_response())
        if terminated or truncated:
            return None
    return obs


def running_after(env, expert_steps: int) -> int:
    """The first training task whose episode still runs after ``expert_steps`` expert steps."""
    return next(i for i in range(env.num_tasks()) if play_expert(env, i, expert_steps) is not None)


#: (max steps, expert steps before the adversarial one): after reset, mid-episode, on the last turn
STATES = [(4, 0), (4, 2), (3, 2)]


@pytest.mark.parametrize("rule", ["format", "strict"])
@pytest.mark.parametrize("task", TASKS)
def test_adversarial_responses_are_invalid_steps_that_change_nothing(task, rule):
    options = [{}, {"invalid_feedback": True}] if task == "deepsearch" else [{}]
    steps_key = "max_turns" if task == "deepsearch" else "max_steps"
    for kw in options:
        for max_steps, expert_steps in STATES:
            env = make_env(task, split="train", invalid_rule=rule, **{steps_key: max_steps}, **kw)
            index = running_after(env, expert_steps)
            for response in ADVERSARIAL:
                obs_before = play_expert(env, index, expert_steps)
                before = snapshot(env)
                obs, reward, terminated, truncated, info = env.step(response)
                last = expert_steps + 1 == max_steps
                assert info["action_valid"] is False and info["penalty"] == env.invalid_action_penalty
                assert reward == 0.0 and not terminated and truncated == last and info["turn"] == expert_steps + 1
                assert isinstance(obs, str) and obs == expected_feedback(env, obs_before, done=last)
                assert snapshot(env) == before, (task, rule, kw, max_steps, expert_steps, response[:80])
                if last:
                    assert info["won"] is False and info["metrics"]["invalid_actions"] >= 1


# ------------------------------------------------------------------------------- a whole training epoch


def noise_logits(seed: int = 0) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Logits of a random policy: standard normal noise, from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)

    def logits(real: torch.Tensor, step: int) -> torch.Tensor:
        return torch.randn(real.shape, generator=generator, dtype=real.dtype)

    return logits


def scripted_logits(token_ids: List[int]) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Logits that make the ``step``-th response token ``token_ids[step]`` (log-probs stay finite)."""

    def logits(real: torch.Tensor, step: int) -> torch.Tensor:
        forced = torch.full_like(real, -1e4)
        forced[..., token_ids[step]] = 0.0
        return forced

    return logits


@pytest.fixture
def policy_writes(monkeypatch):
    """``policy_writes(make_logits)``: every rollout (training and validation) samples through the
    real ``generate`` and the real model, whose logits ``make_logits(tokenizer)`` replaces (called
    with the model's logits and the index of the token being generated). Returns the set of response
    texts the policy produced, as the sampler decodes them."""
    texts = set()

    def install(make_logits: Callable[[Any], Callable[[torch.Tensor, int], torch.Tensor]]) -> set:
        real_generate = backends_module.generate
        replace = None

        def generate(policy, prompt_ids, max_new_tokens, temperature=1.0, **kwargs):
            nonlocal replace
            replace = replace or make_logits(policy.tokenizer)
            calls = [0]  # forward passes of this call: the first reads the prompts, each later one a token

            def hook(module, args, output):
                output.logits = replace(output.logits, calls[0])
                calls[0] += 1
                return output

            handle = policy.model.register_forward_hook(hook)
            try:
                responses, log_probs, entropies = real_generate(policy, prompt_ids, max_new_tokens, temperature,
                                                                **kwargs)
            finally:
                handle.remove()
            texts.update(policy.tokenizer.decode(ids, skip_special_tokens=True) for ids in responses)
            return responses, log_probs, entropies

        monkeypatch.setattr(backends_module, "generate", generate)  # what the hf backend calls
        return texts

    return install


@pytest.fixture
def policy_steps(monkeypatch):
    """``policy_steps(texts)``: records, for every env step whose response is one of ``texts``, the
    env, its state before and after, the observation before and the step's result."""
    records: List[Dict[str, Any]] = []

    def install(texts: set) -> List[Dict[str, Any]]:
        for cls in (AlfWorldEnv, DeepSearchEnv, WebShopEnv):
            real_step, real_reset = cls.step, cls.reset

            def reset(self, *args, _real=real_reset, **kwargs):
                obs, info = _real(self, *args, **kwargs)
                self._last_obs = obs
                return obs, info

            def step(self, response, _real=real_step):
                if response not in texts:  # the expert's steps (warm start, guidance) are not checked
                    result = _real(self, response)
                else:
                    before, obs_before = snapshot(self), self._last_obs
                    result = _real(self, response)
                    records.append({"env": self, "response": response, "before": before, "after": snapshot(self),
                                    "obs_before": obs_before, "result": result})
                self._last_obs = result[0]
                return result

            monkeypatch.setattr(cls, "reset", reset)
            monkeypatch.setattr(cls, "step", step)
        return records

    return install


#: shorter ALFWorld and WebShop episodes (Deep Search's are 4 turns): a random policy never ends one
#: early, and every step is checked the same way at any length
SHORT = {"alfworld": ["task.env.max_steps=5"], "webshop": ["task.env.max_steps=5"]}


def assert_epoch_of_invalid_moves(metrics, records):
    assert float(metrics["rollout/invalid_action_rate"]) == 1.0
    assert float(metrics["val/invalid_action_rate"]) == 1.0
    assert records, "the policy took no step"
    for r in records:
        obs, reward, terminated, truncated, info = r["result"]
        assert info["action_valid"] is False and reward == 0.0 and not terminated
        assert obs == expected_feedback(r["env"], r["obs_before"], done=truncated)
        assert r["after"] == r["before"], r["response"][:80]


@pytest.mark.parametrize("task", TASKS)
def test_epoch_with_a_policy_of_random_tokens(make_cfg, task, policy_writes, policy_steps):
    texts = policy_writes(lambda tokenizer: noise_logits())
    records = policy_steps(texts)
    metrics, objects = train(make_cfg(f"task={task}", *SHORT.get(task, [])))
    assert objects["trainer"].current_epoch == 1  # the epoch completed
    assert_epoch_of_invalid_moves(metrics, records)
    # random tokens of a byte-level vocabulary: bytes that are not UTF-8 reached the environment
    assert any("\ufffd" in r["response"] for r in records)
    assert len({r["response"] for r in records}) > len(records) // 2


@pytest.mark.parametrize("task", TASKS)
def test_epoch_with_a_policy_writing_nested_unclosed_tags(make_cfg, task, policy_writes, policy_steps):
    text = TAG_RESPONSES[2]
    texts = policy_writes(lambda tokenizer: scripted_logits(tokenizer(text, add_special_tokens=False)["input_ids"]))
    records = policy_steps(texts)
    cfg = make_cfg(f"task={task}", *SHORT.get(task, []))
    metrics, objects = train(cfg)
    assert objects["trainer"].current_epoch == 1
    assert_epoch_of_invalid_moves(metrics, records)
    # every response is the string's first max_new_tokens tokens
    prefixes = {r["response"] for r in records}
    assert len(prefixes) == 1 and text.startswith(prefixes.pop())
    assert all(len(s.response_ids) == cfg.task.sampler.max_new_tokens
               for s in objects["model"].last_val_rollout.steps)


# ------------------------------------------------------------------------- the parsers (a) made linear

_SEARCH_BLOCK = re.compile(r"<search>(.*?)</search>", re.IGNORECASE | re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_OPEN = {kind: re.compile(f"<{kind}>", re.IGNORECASE) for kind in ("search", "answer")}
_THOUGHT = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_WEBSHOP_ACTION = re.compile(r"(.+)\[(.+)\]")


def regex_projection(response: str, require_think: bool) -> Projection:
    """Deep Search's projection as the regexes define it (the implementation before the linear scan)."""
    trimmed = response
    for close in ("</search>", "</answer>"):
        if close in response:
            trimmed = response.split(close, 1)[0] + close
            break
    found, kind = _SEARCH_BLOCK.search(trimmed), "search"
    if found is None:
        found, kind = _ANSWER_BLOCK.search(trimmed), "answer"
    if found is None:
        return NO_ACTION
    searches, answers = len(_OPEN["search"].findall(response)), len(_OPEN["answer"].findall(response))
    well_formed = not (searches and answers) and searches <= 1 and answers <= 1
    if require_think and not _THOUGHT.search(response[:found.start()]):
        well_formed = False
    return Projection(kind, found.group(1).strip(), well_formed)


def regex_parse_action(action: str):
    m = _WEBSHOP_ACTION.match(action)
    return (m.group(1), m.group(2)) if m and m.group(1) in ("search", "click") else ("", "")


#: pieces that exercise every branch: tags in any case (also "ſ", which re.IGNORECASE folds to "s")
DEEPSEARCH_PIECES = st.sampled_from(["<search>", "</search>", "<answer>", "</answer>", "<think>", "</think>",
                                     "<SEARCH>", "</Answer>", "<ſearch>", "q", " ", "\n", "<", ">"])
WEBSHOP_PIECES = st.sampled_from(["search", "click", "[", "]", "\n", "a", " ", "click[", "]]", "[["])


@given(st.lists(DEEPSEARCH_PIECES, max_size=12).map("".join), st.booleans())
def test_deepsearch_projection_equals_its_regex_definition(response, require_think):
    assert project_action(response, require_think) == regex_projection(response, require_think)


@given(st.lists(WEBSHOP_PIECES, max_size=10).map("".join))
def test_webshop_parse_action_equals_its_regex_definition(action):
    assert parse_action(action) == regex_parse_action(action)
