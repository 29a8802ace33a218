"""The WebShop experts: who writes the warm start's demonstrations (``env.expert``).

* ``grounded`` (the default) shops from what the pages show, as a person with the instruction would: it
  searches the instruction's product words, opens the listed product whose title shares most words with
  the instruction among those whose shown price fits the budget, selects the requested options it finds
  on the product page, and goes back to the next candidate when an option is not offered or the price is
  over the budget (:class:`GroundedShopper`). What it cannot see (attributes listed only in the catalogue,
  a price drawn inside a shown range) makes it miss some goals, as a person would.
* ``omniscient`` buys the product with the best score it can reach, reading the catalogue's hidden fields
  and the scorer (:func:`reachable_score`, ``WebShopEnv._best_result``): an upper bound, whose choice among
  look-alike results a policy cannot learn from the page.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Mapping, Set, Tuple

from envs.webshop.reward import fuzzy, get_reward, normalize_color
from envs.webshop.shop import BACK_TO_SEARCH, BUY_NOW, NEXT_PAGE, PREV_PAGE, Browser

EXPERTS = ("grounded", "omniscient")
_PRICE_CLAUSE = re.compile(r",? and price lower than [\d.]+ dollars\s*$")
_PRICE = re.compile(r"\$\s*([\d,]+(?:\.\d+)?)")
_WORD = re.compile(r"[a-z0-9]+")
#: instruction words that say nothing about the product
_FILLER = frozenset("i im i'm a an the and or with for of to in on me my need want looking find buy get "
                    "would like please some that is it am".split())
#: products the grounded shopper opens and leaves before it buys the best remaining one regardless
MAX_REJECTIONS = 3
#: results pages the grounded shopper reads before it settles for what it has seen
MAX_PAGES = 2
#: option similarity (WebShop's fuzzy ratio, 0-100) above which a shown value counts as the requested one
OPTION_MATCH = 85.0


def say(thought: str, action: str) -> str:
    return f"<think>{thought}</think><action>{action}</action>"


def expert_query(goal: Mapping[str, Any]) -> str:
    """The goal's words minus the option and price clauses (what the expert types in the search bar)."""
    text = _PRICE_CLAUSE.sub("", str(goal["instruction_text"]))
    opts = goal.get("goal_options")
    if isinstance(opts, Mapping) and opts:
        cut = text.rfind(f" with {next(iter(opts))}: ")
        if cut > 0:
            text = text[:cut]
    return " ".join(text.lower().replace("[", " ").replace("]", " ").split())


def reachable_score(prices: Mapping[str, float], product: Mapping[str, Any], goal: Mapping[str, Any],
                    noun_parser: str = "heuristic") -> Tuple[float, Dict[str, str]]:
    """The score buying ``product`` reaches with the options :func:`choose_options` picks, and those options."""
    chosen = choose_options(product, goal)
    return get_reward(product, goal, prices.get(product["asin"], 100.0), chosen, noun_parser=noun_parser), chosen


def choose_options(product: Mapping[str, Any], goal: Mapping[str, Any]) -> Dict[str, str]:
    """Option values of ``product`` closest to the goal's (exact name/value first, then fuzzy)."""
    options: Dict[str, List[str]] = product.get("options") or {}
    wanted = goal.get("goal_options") or []
    pairs = list(wanted.items()) if isinstance(wanted, Mapping) else [(None, v) for v in wanted]
    chosen: Dict[str, str] = {}
    for name, value in pairs:
        value = str(value).lower()
        if name in options and value in options[name]:
            chosen[name] = value
            continue
        best, best_score = None, OPTION_MATCH
        for opt_name, values in options.items():
            if opt_name in chosen:
                continue
            for v in values:
                s = fuzzy(normalize_color(v), normalize_color(value))
                if s > best_score:
                    best, best_score = (opt_name, v), s
        if best:
            chosen[best[0]] = best[1]
    return chosen


def product_words(goal: Mapping[str, Any]) -> Set[str]:
    """The instruction's words about the product itself (no options, no price, no filler)."""
    return {w for w in _WORD.findall(expert_query(goal)) if w not in _FILLER}


def lowest_shown_price(text: str) -> float:
    """The lowest dollar amount in a shown price (``$12.5``, ``$129.74 to $171.98``); inf when none."""
    amounts = [float(a.replace(",", "")) for a in _PRICE.findall(str(text))]
    return min(amounts) if amounts else math.inf


def budget(goal: Mapping[str, Any]) -> float:
    """The instruction's price limit (inf when it states none)."""
    return float(goal.get("price_upper", math.inf))


def title_match(title: str, words: Set[str]) -> int:
    return len(words & set(_WORD.findall(str(title).lower())))


class GroundedShopper:
    """Shops from the page text and the instruction only; remembers which products it opened and left.

    Everything it decides on a page is computed from that page, the instruction and the products it
    has already left (which the prompt's last steps show: the page it left and the ``< prev`` click)."""

    def __init__(self) -> None:
        self.rejected: List[str] = []  # ASINs opened and left, in order

    def respond(self, b: Browser) -> str:
        """The response for the browser's current page."""
        if b.page == "search":
            return say("search for the requested product", f"search[{expert_query(b.goal)}]")
        if b.page == "results":
            return self._on_results(b)
        if b.page == "item":
            return self._on_item(b)
        if b.page == "sub":
            return say("back to the product", f"click[{PREV_PAGE}]")
        return say("the purchase is done", f"click[{BUY_NOW}]")

    # ------------------------------------------------------------------ pages
    def _candidates(self, b: Browser) -> List[Tuple[int, int, str]]:
        """(-title words shared, rank, asin) of this page's products not yet left, best first; those whose
        shown price is over the budget only when nothing else is left (then title match alone decides)."""
        words = product_words(b.goal)
        listed = [(p, i) for i, p in enumerate(b.page_products()) if p["asin"] not in self.rejected]
        affordable = [(p, i) for p, i in listed if lowest_shown_price(p.get("Price", "")) <= budget(b.goal)]
        pool = affordable if affordable else listed
        return sorted((-title_match(p.get("Title", ""), words), i, p["asin"]) for p, i in pool)

    def _on_results(self, b: Browser) -> str:
        candidates = self._candidates(b)
        exhausted = len(self.rejected) >= MAX_REJECTIONS
        if not candidates:
            if b.page_num < MAX_PAGES and not exhausted:
                return say("nothing left to try here, next page", f"click[{NEXT_PAGE}]")
            if b.page_num > 1:
                return say("back to the earlier results", f"click[{PREV_PAGE}]")
            return say("nothing useful here, search again", f"click[{BACK_TO_SEARCH}]")
        best = candidates[0]
        if best[0] == 0 and b.page_num < MAX_PAGES and not exhausted:
            return say("no title here matches, next page", f"click[{NEXT_PAGE}]")
        return say("this title matches the instruction best", f"click[{best[2].lower()}]")

    def _on_item(self, b: Browser) -> str:
        product = b.product or {}
        asin = product.get("asin", "")
        last_chance = len(self.rejected) >= MAX_REJECTIONS
        if lowest_shown_price(product.get("Price", "")) > budget(b.goal) and not last_chance:
            return self._leave(asin, "over the budget, go back")
        wanted = choose_options(product, b.goal)
        requested = b.goal.get("goal_options") or []
        if len(wanted) < len(requested) and not last_chance:
            return self._leave(asin, "a requested option is not offered, go back")
        for name, value in wanted.items():
            if b.options.get(name) != value:
                return say(f"select the {name}", f"click[{value}]")
        return say("everything matches, buy it", f"click[{BUY_NOW}]")

    def _leave(self, asin: str, thought: str) -> str:
        if asin and asin not in self.rejected:
            self.rejected.append(asin)
        return say(thought, f"click[{PREV_PAGE}]")
