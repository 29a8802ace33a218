"""Shopping goals as WebShop builds them, one fixed goal order, and disjoint splits.

Synthetic goals (:func:`synthetic_goals`, upstream ``get_synthetic_goals``): for every product with
an instruction, one goal per combination of its option values (option names sorted), instruction
``"{instruction} with name1: v1, and name2: v2, and price lower than P dollars"`` where ``P`` is the
larger of two draws from the first four multiples of 10 above the product's price (no price clause
and ``price_upper = 1e6`` when fewer than two exist). Human goals (:func:`human_goals`, upstream
``get_human_goals``): the crowd-written instructions of ``items_human_ins.json`` with their
attributes and option values, plus the same price clause.

Randomness follows upstream's order on one ``random.Random(233)``: the product prices
(:func:`product_prices`; a price range draws uniformly inside it), then the price limits while the
goals are built, then one shuffle of the whole goal list. The permutation therefore never depends on
the environment's seed: every worker sees the same goal order (verl-agent re-seeds it per worker,
so its "test" goals differ between workers and overlap its training goals; we do not copy that).

Splits are disjoint index ranges of the shuffled list (upstream ``baseline_models/env.py``):

* ``test``  = goals[0:500]
* ``val``   = goals[500:1500]
* ``train`` = goals[1500:]

With fewer than 3,000 goals (small real subsets, test fixtures) the three boundaries are scaled by
``n / 3000`` (and each split keeps at least one goal), see :func:`split_ranges`. The ranges split
goals, not products: as upstream, one product's other option combinations may sit in another split.
"""
from __future__ import annotations

import itertools
import random
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

SPLITS = ("train", "val", "test")
GOAL_SEED = 233
PRICE_RANGE = [10.0 * i for i in range(1, 100)]
_STANDARD = {"test": (0, 500), "val": (500, 1500), "train": (1500, None)}
_STANDARD_MIN = 3000


def product_prices(products: List[dict], rng: random.Random) -> Dict[str, float]:
    """One price per ASIN: the single price, a uniform draw within a range, 100.0 when missing."""
    prices = {}
    for p in products:
        pricing = p.get("pricing") or []
        if not pricing:
            price = 100.0
        elif len(pricing) == 1:
            price = float(pricing[0])
        else:
            price = rng.uniform(*pricing[:2])
        prices[p["asin"]] = price
    return prices


def _price_limit(price: float, rng: random.Random) -> Tuple[float, str]:
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) >= 2:
        _, upper = sorted(rng.sample(above, 2))
        return upper, f", and price lower than {upper:.2f} dollars"
    return 1_000_000.0, ""


def _goal(product: dict, instruction: str, attributes: list, options, price_upper: float) -> dict:
    return {
        "asin": product["asin"], "category": product.get("category", ""), "query": product.get("query", ""),
        "name": product.get("name", product.get("Title", "")), "product_category": product.get("product_category", ""),
        "instruction_text": instruction, "attributes": list(attributes), "price_upper": price_upper,
        "goal_options": options,
    }


def _add_weights(goals: List[dict]) -> None:
    counts: Dict[str, int] = defaultdict(int)
    for g in goals:
        for a in g["attributes"]:
            counts[a] += 1
    for g in goals:
        g["weight"] = sum(1.0 / counts[a] for a in g["attributes"]) / max(len(g["attributes"]), 1)


def synthetic_goals(products: List[dict], prices: Optional[Dict[str, float]], rng: random.Random) -> List[dict]:
    goals: List[dict] = []
    for p in products:
        if not p.get("instruction_text") or not p.get("instruction_attributes"):
            continue
        if prices is not None:
            upper, price_text = _price_limit(prices[p["asin"]], rng)
        else:
            upper, price_text = 1_000_000.0, ""
        names = sorted(p.get("options") or {})
        for combo in itertools.product(*(p["options"][n] for n in names)):
            options = dict(zip(names, combo))
            option_text = ", and ".join(f"{k}: {v}" for k, v in options.items())
            option_text = f" with {option_text}" if option_text else ""
            goals.append(_goal(p, f"{p['instruction_text']}{option_text}{price_text}",
                               p["instruction_attributes"], options, upper))
    _add_weights(goals)
    return goals


def human_goals(products: List[dict], prices: Optional[Dict[str, float]], rng: random.Random) -> List[dict]:
    goals: List[dict] = []
    for p in products:
        for ins in p.get("instructions") or []:
            attributes = ins.get("instruction_attributes") or []
            if not attributes:
                continue
            if prices is not None:
                upper, price_text = _price_limit(prices[p["asin"]], rng)
            else:
                upper, price_text = 1_000_000.0, ""
            goals.append(_goal(p, str(ins.get("instruction", "")).strip(".") + price_text, attributes,
                               list(ins.get("instruction_options") or []), upper))
    _add_weights(goals)
    return goals


def build_goals(products: List[dict], human: bool = False) -> Tuple[List[dict], Dict[str, float]]:
    """``(goals in the fixed shuffled order, product prices)``; see the module docstring."""
    rng = random.Random(GOAL_SEED)
    prices = product_prices(products, rng)
    goals = (human_goals if human else synthetic_goals)(products, prices, rng)
    rng.shuffle(goals)
    for i, g in enumerate(goals):
        g["index"] = i
    return goals, prices


def split_ranges(n: int) -> Dict[str, Tuple[int, int]]:
    """``{split: (start, stop)}`` over ``n`` shuffled goals: disjoint, in order test | val | train."""
    if n >= _STANDARD_MIN:
        return {s: (a, n if b is None else b) for s, (a, b) in _STANDARD.items()}
    if n < 3:
        raise ValueError(f"need at least 3 goals to make train/val/test splits, got {n}")
    t = max(1, round(n * 500 / _STANDARD_MIN))
    v = max(t + 1, round(n * 1500 / _STANDARD_MIN))
    v = min(v, n - 1)
    return {"test": (0, t), "val": (t, v), "train": (v, n)}
