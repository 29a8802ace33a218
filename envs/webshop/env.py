"""``webshop``: find and buy the product a shopping instruction describes, on a text web shop.

Pages, actions and the text observation follow WebShop's text environment in "simple" mode (see
:mod:`envs.webshop.shop`); the purchase score is WebShop's ``get_reward`` (:mod:`envs.webshop.reward`).
The catalogue is generated from a seed (:mod:`envs.webshop.catalogue`) unless ``data_dir`` points at
the real WebShop files; goals, their fixed order and the disjoint split ranges are described in
:mod:`envs.webshop.goals` (test = goals[0:500], val = goals[500:1500], train = goals[1500:]).

Response format and projection (verl-agent's WebShop projection, :func:`extract_action`): the whole
response is lower-cased and the action is the text between the first ``<action>`` and the first
``</action>``; without both tags the last 20 characters stand in for the action. The response is
*malformed* when a tag is missing, when ``require_think`` is set and ``<think>`` or ``</think>`` is
missing, or when it holds a CJK character.

The game (:func:`parse_action`, WebShop's text env): ``search[keywords]`` runs from any page and
opens that query's results; ``click[x]`` runs when ``x`` is clickable on the current page. Anything
else (an unclickable target, an empty query, text that is no command) is a no-op: the same page
comes back, without error text, as on the real site. Such a well-formed step is *inadmissible*.

Validity (``invalid_rule``):

* ``"format"`` (default, verl-agent): only a malformed response is invalid. The projected action is
  still sent to the game, as verl-agent does (so a response without ``<think>`` still clicks), and an
  inadmissible command is a valid, free no-op.
* ``"strict"``: an inadmissible command is invalid too, and an invalid step changes nothing.

An invalid step carries ``info["penalty"] = invalid_action_penalty`` (0.0 otherwise) and
``info["action_valid"] = False``; the trainer subtracts the penalty from that step's row, the reward
returned by :meth:`WebShopEnv.step` never includes it. Episode metrics count ``invalid_actions``
(under the active rule), ``valid_action_ratio`` and ``inadmissible_actions`` (under either rule).

Observation: the page's text as verl-agent's ``format_obs`` gives it (:func:`format_observation`):
the parts after the goal text, each in single quotes, joined by `` [SEP] ``; the goal itself is in
``info["instruction"]``. ``info["admissible_actions"]`` lists ``search[<your query>]`` where the
search bar is, then one ``click[...]`` per clickable.

Reward: ``reward_scale`` (10.0, as verl-agent) on the ``Buy Now`` step iff the purchase score is
exactly 1.0, else 0; the raw score in [0, 1] is ``info["metrics"]["score"]`` when the episode ends.
Episodes end at ``Buy Now`` (terminated) or after ``max_steps`` (15) steps (truncated, score 0).
"""
from __future__ import annotations

import random
import re
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from envs.base import StepResult, TextEnv
from envs.registry import register_env
from envs.webshop.catalogue import DEFAULT_NUM_PRODUCTS
from envs.webshop.expert import EXPERTS, GroundedShopper, expert_query, reachable_score, say
from envs.webshop.reward import NOUN_PARSERS
from envs.webshop.shop import (BACK_TO_SEARCH, BUY_NOW, NEXT_PAGE, PREV_PAGE, PRODUCT_WINDOW, SEARCH_PLACEHOLDER,
                               SEP, Browser, get_shop)

INSTRUCTION = (
    "You are shopping online. Find and buy the product that best matches the instruction below. Each turn, "
    "think inside <think> </think>, then give exactly one action inside <action> </action>: search[keywords] "
    "on the search page, or click[...] with one of the admissible clicks (a button, a product id or an "
    "option value). Select the requested options before you click buy now."
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
#: characters of a tag-less response sent to the game (verl-agent's WebShop projection)
FALLBACK_CHARS = 20
INVALID_RULES = ("format", "strict")
#: the settings that decide what the tokenizer's corpus holds (the shop and who plays the demonstrations)
_CORPUS_KEYS = ("catalogue_seed", "num_products", "data_dir", "product_file", "attribute_file", "human_goal_file",
                "human_goals", "expert")


def extract_action(response: str, require_think: bool = True) -> Tuple[str, bool]:
    """``(action sent to the game, well_formed)`` as verl-agent's WebShop projection computes them:
    the lower-cased text between the first ``<action>`` and the first ``</action>`` (empty when the
    closing tag comes first), else the last 20 characters; malformed without both action tags,
    without ``<think>`` / ``</think>`` (when required) or with a CJK character."""
    original = str(response)
    text = original.lower()
    start, end = text.find("<action>"), text.find("</action>")
    if start < 0 or end < 0:
        return text[-FALLBACK_CHARS:], False
    action = text[start + len("<action>"):end].strip()
    ok = not _CJK.search(original)
    if require_think and ("<think>" not in original or "</think>" not in original):
        ok = False
    return action, ok


def parse_action(action: str) -> Tuple[str, str]:
    """``("search" | "click" | "", argument)`` as WebShop's ``parse_action`` reads a command: a match
    of ``(.+)\\[(.+)\\]`` at the start, whose name is exactly ``search`` or ``click``.

    Computed without the regex, which backtracks over every ``[`` and ``]`` (seconds on 20 kB of
    brackets): ``.`` stops at the first newline, so the match lies in the first line; both groups are
    greedy, so the argument ends at the line's last ``]`` and starts after the last ``[`` that leaves
    both groups non-empty."""
    line = action.partition("\n")[0]
    close = line.rfind("]")
    bracket = line.rfind("[", 1, close - 1) if close > 0 else -1
    if bracket < 0 or line[:bracket] not in ("search", "click"):
        return "", ""
    return line[:bracket], line[bracket + 1:close]


def format_observation(page_text: str, goal_text: str) -> str:
    """verl-agent's ``format_obs``: the `` [SEP] ``-parts after the goal text, each in single quotes
    (the page text itself when the goal is not one of its parts, e.g. the done page)."""
    parts = page_text.split(SEP)
    if goal_text not in parts:
        return page_text
    return SEP.join(f"'{p}'" for p in parts[parts.index(goal_text) + 1:])


@register_env("webshop")
class WebShopEnv(TextEnv):
    """One shopping episode at a time over a cached :class:`envs.webshop.shop.Shop`."""

    def __init__(self, split: str = "train", seed: int = 0, *, catalogue_seed: int = 0,
                 num_products: int = DEFAULT_NUM_PRODUCTS, data_dir: Optional[str] = None,
                 product_file: str = "items_shuffle_1000.json", attribute_file: str = "items_ins_v2_1000.json",
                 human_goal_file: str = "items_human_ins.json", human_goals: bool = False, max_steps: int = 15,
                 reward_scale: float = 10.0, invalid_action_penalty: float = 0.1, require_think: bool = True,
                 invalid_rule: str = "format", noun_parser: str = "heuristic", expert: str = "grounded") -> None:
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if invalid_rule not in INVALID_RULES:
            raise ValueError(f"env.invalid_rule={invalid_rule!r} is not allowed; allowed values: "
                             f"{', '.join(INVALID_RULES)}")
        if invalid_action_penalty < 0:
            raise ValueError("invalid_action_penalty must be >= 0")
        self.invalid_rule = invalid_rule
        if noun_parser not in NOUN_PARSERS:
            raise ValueError(f"env.noun_parser={noun_parser!r} is not allowed; allowed values: {', '.join(NOUN_PARSERS)}")
        self.noun_parser = noun_parser
        if expert not in EXPERTS:
            raise ValueError(f"env.expert={expert!r} is not allowed; allowed values: {', '.join(EXPERTS)}")
        self.expert = expert
        self.shop = get_shop(catalogue_seed=catalogue_seed, num_products=num_products, data_dir=data_dir,
                             product_file=product_file, attribute_file=attribute_file,
                             human_goal_file=human_goal_file, human_goals=human_goals)
        self.split = split
        self.goals = self.shop.split_goals(split)
        if not self.goals:
            raise ValueError(f"split {split!r} has no goals")
        self.max_steps = int(max_steps)
        self.reward_scale = float(reward_scale)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.require_think = bool(require_think)
        self._rng = random.Random(seed)
        self.browser: Optional[Browser] = None
        self._done = True
        self.turn = 0

    # ------------------------------------------------------------------ episode
    def num_tasks(self) -> int:
        return len(self.goals)

    def reset(self, seed: Optional[int] = None, options: Optional[dict] = None) -> Tuple[str, Dict[str, Any]]:
        goal = self.goals[self.task_index(seed, options, self._rng)]
        self.browser = Browser(self.shop, goal, self.noun_parser)
        self._done = False
        self.turn = 0
        self._invalid = 0
        self._inadmissible = 0
        self._searches = 0
        self._expert_cache: Dict[str, Tuple[float, Dict[str, str]]] = {}
        self._shopper = GroundedShopper()
        obs = self._observation()
        info = {
            "instruction": f"{INSTRUCTION}\nInstruction: {goal['instruction_text']}",
            "task_id": f"{self.split}/{goal['index']}",
            "goal": goal["instruction_text"],
            "admissible_actions": self.browser.admissible_actions(),
            "anchor_obs": obs,
        }
        return obs, info

    def step(self, response: str) -> StepResult:
        response = self._begin_step(response, started=self.browser is not None)
        self.turn += 1
        action, well_formed = extract_action(response, self.require_think)
        if self.invalid_rule == "format" or well_formed:
            admitted = self._execute(action)
        else:
            admitted = False
        valid = well_formed and (admitted or self.invalid_rule == "format")
        self._invalid += int(not valid)
        self._inadmissible += int(well_formed and not admitted)
        terminated = self.browser.page == "done"
        truncated = not terminated and self.turn >= self.max_steps
        score = float(self.browser.score or 0.0)
        won = terminated and score == 1.0
        obs = self._observation()
        info: Dict[str, Any] = {
            "action": action if well_formed or admitted else "", "action_valid": valid,
            "penalty": 0.0 if valid else self.invalid_action_penalty, "turn": self.turn, "anchor_obs": obs,
            "page": self.browser.page,
            "admissible_actions": [] if terminated or truncated else self.browser.admissible_actions(),
        }
        if terminated or truncated:
            self._done = True
            info.update(won=won, success=won, metrics={
                "score": score,
                "success": float(won),
                "purchased": float(terminated),
                "invalid_actions": float(self._invalid),
                "valid_action_ratio": 1.0 - self._invalid / self.turn,
                "inadmissible_actions": float(self._inadmissible),
                "num_searches": float(self._searches),
            })
        return obs, self.reward_scale if won else 0.0, terminated, truncated, info

    def _execute(self, action: str) -> bool:
        """Play ``action`` as WebShop's text env does; False when the game does not admit it (a no-op)."""
        kind, arg = parse_action(action)
        if kind == "search":
            done = self.browser.search(arg)
            self._searches += int(done)
            return done
        return kind == "click" and self.browser.click(arg)

    def _observation(self) -> str:
        return format_observation(self.browser.observation(), self.browser.instruction)

    # ------------------------------------------------------------------ expert
    def _plan(self, product: dict) -> Tuple[float, Dict[str, str]]:
        """The best score buying ``product`` can reach, and the option values that reach it."""
        asin = product["asin"]
        if asin not in self._expert_cache:
            self._expert_cache[asin] = reachable_score(self.shop.prices, product, self.browser.goal, self.noun_parser)
        return self._expert_cache[asin]

    def _best_result(self) -> Tuple[int, float]:
        """(rank in the search results, reachable score) of the product the expert wants."""
        goal_asin = self.browser.goal["asin"]
        # highest reachable score, then the earliest results page, then the goal's own product
        best = max(range(len(self.browser.results)), key=lambda i: (
            self._plan(self.shop.by_asin[self.browser.results[i]])[0], -(i // PRODUCT_WINDOW),
            self.browser.results[i] == goal_asin, -i))
        return best, self._plan(self.shop.by_asin[self.browser.results[best]])[0]

    def expert_response(self) -> str:
        if self.browser is None:
            raise RuntimeError("WebShopEnv.expert_response called before reset()")
        b = self.browser
        if self.expert == "grounded":
            return self._shopper.respond(b)
        if b.page == "search":
            query = expert_query(b.goal) if self._searches == 0 else f"{b.goal['query']} {' '.join(b.goal['attributes'])}"
            return say("search for the requested product", f"search[{query}]")
        if b.page == "results":
            if not b.results or not b.page_products():
                return say("nothing useful here, search again", f"click[{BACK_TO_SEARCH}]")
            rank, _ = self._best_result()
            page = rank // PRODUCT_WINDOW + 1
            if page > b.page_num:
                return say("a better match is on a later page", f"click[{NEXT_PAGE}]")
            if page < b.page_num:
                return say("a better match was on an earlier page", f"click[{PREV_PAGE}]")
            return say("this product matches best", f"click[{b.results[rank].lower()}]")
        if b.page == "item":
            score, chosen = self._plan(b.product)
            if b.results and self._best_result()[1] > score:
                return say("not the best match, go back", f"click[{PREV_PAGE}]")
            for name, value in chosen.items():
                if b.options.get(name) != value:
                    return say(f"select the {name}", f"click[{value}]")
            return say("everything matches, buy it", f"click[{BUY_NOW}]")
        if b.page == "sub":
            return say("back to the product", f"click[{PREV_PAGE}]")
        return say("the purchase is done", f"click[{BUY_NOW}]")

    # ------------------------------------------------------------------ corpus and report
    @classmethod
    def tokenizer_corpus(cls, **cfg: Any) -> Iterable[str]:
        shop_cfg = {k: v for k, v in cfg.items() if k in _CORPUS_KEYS}
        yield INSTRUCTION
        yield SEARCH_PLACEHOLDER
        per_split = int(cfg.get("corpus_goals", 80))
        for split in ("train", "val", "test"):
            env = cls(split=split, **shop_cfg)
            stride = max(1, env.num_tasks() // per_split)
            for i in range(0, env.num_tasks(), stride)[:per_split]:
                obs, info = env.reset(options={"index": i})
                yield info["instruction"]
                yield obs
                for _ in range(env.max_steps):
                    response = env.expert_response()
                    yield response
                    obs, _, terminated, truncated, step_info = env.step(response)
                    yield obs
                    yield ", ".join(step_info["admissible_actions"])
                    if terminated or truncated:
                        break

    @classmethod
    def tokenizer_atoms(cls, **cfg: Any) -> Sequence[str]:
        """The catalogue's product ids, lowercase as the clicks write them (``click[b0x6dawnjr]``): byte-level
        BPE cuts a random 10-character id into ~8 one-character pieces, so copying one off the page is an
        8-token copy among ten ids that share the ``b0`` prefix (docs/tuning.md, WebShop runs 2-3)."""
        shop = get_shop(**{k: v for k, v in cfg.items() if k in _CORPUS_KEYS and k != "expert"})
        return sorted(p["asin"].lower() for p in shop.products)

    @classmethod
    def report(cls, metrics: Mapping[str, float]) -> str:
        """WebShop's line as the EMPG paper prints it: Score = mean purchase score x 100, Success %."""
        if "task/score" not in metrics and "success" not in metrics:
            return ""
        score = 100.0 * float(metrics.get("task/score", 0.0))
        success = 100.0 * float(metrics.get("success", 0.0))
        return "| Task | Score | Succ. |\n|---|---|---|\n" + f"| WebShop | {score:.1f} | {success:.1f} |"
