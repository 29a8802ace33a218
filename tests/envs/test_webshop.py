"""Tests of the WebShop task: get_reward values, catalogue and loaders, goals and splits, pages and
actions, the invalid-step rules (fuzzed), the expert and the task's plumbing."""
import json
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.webshop import WebShopEnv
from envs.webshop import catalogue
from envs.webshop.catalogue import generate_raw, load_data_dir, load_products, save_raw
from envs.webshop.env import INSTRUCTION, extract_action, format_observation, parse_action
from envs.webshop.expert import EXPERTS, choose_options, expert_query, lowest_shown_price, reachable_score
from envs.webshop.goals import build_goals, split_ranges
from envs.webshop.reward import (COLOR_SET, get_attribute_reward, get_option_reward, get_reward, get_type_reward, name_nouns,
                                 normalize_color)
from envs.webshop.search import SearchEngine, s_stem
from envs.webshop.shop import get_shop

DATA = os.path.join(os.path.dirname(__file__), "data", "webshop")
SHIRT = ("i want a slim fit men's t-shirt that is machine washable with color: black, and size: small, "
         "and price lower than 40.00 dollars")


@pytest.fixture(scope="module")
def shop():
    return get_shop()


def _tiny(**kw):
    return WebShopEnv(split="train", data_dir=DATA, **kw)


def _act(action, think="ok"):
    return f"<think>{think}</think><action>{action}</action>"


def _quoted(page):
    """A page's parts (after the goal) as verl-agent's format_obs writes them."""
    return " [SEP] ".join(f"'{p}'" for p in page.split(" [SEP] "))


# ---------------------------------------------------------------------- reward (upstream test_goal.py values)
def test_type_reward():
    goal = {"query": "Query 1", "product_category": "a › b › c", "name": "Name 1"}
    bought = dict(goal)
    r = get_type_reward(bought, goal)
    assert r["r_type"] == 1.0 and r["query_match"] and r["category_match"] and r["title_score"] == 1
    for cat, match in [("b › c › a", True), ("d › e › f", False), ("a › d › b", True), ("a › a › b", True),
                       ("a › a › d", False)]:
        assert get_type_reward(dict(bought, product_category=cat), goal)["category_match"] is match

    def title(g, p):
        return get_type_reward({"name": p}, {"name": g})["title_score"]

    # the noun fallback against spaCy's values upstream (0.85 / 0.31 / 0.17 / < 0.05)
    assert title("adidas Unisex-Adult D.o.n. Issue 2 Basketball Shoe",
                 "adidas Unisex-Adult D.o.n. Issue 2 Indoor Court Shoe") == pytest.approx(0.85, abs=0.01)
    cord = "BRST AC Power Cord Outlet Socket Cable Plug Lead for Panasonic SC-HT830V DVD/VCR Combo Home Theater System"
    soundbar = "Saireed UL Listed 2 Prong Power Cord for JBL Bar 3.1 Bar 2.1 Channel 4K Ultra HD Soundbar"
    assert title(soundbar + " Home Theater System Subwoofer", cord) == pytest.approx(0.31, abs=0.01)
    assert title(soundbar, cord) == pytest.approx(0.17, abs=0.01)
    assert title("Rusticware 921ORB Kitchen and Bath Cabinet Knob",
                 "Minkissy 2pcs Stainless Steel Eyebrow Tweezers Blackhead Acne Remover Portable Makeup Tweezers "
                 "(Silver)") < 0.05
    assert title("4K 2.1", "anything") == 0.2  # no noun in the goal name
    assert "listed" not in name_nouns(soundbar) and "soundbar" in name_nouns(soundbar)


def test_attribute_reward():
    goal = {"attributes": ["tea tree", "essential oils", "natural ingredients"]}
    assert get_attribute_reward({"Attributes": ["tea tree", "essential oil", "natural ingredients"]}, goal) == (1, 3)
    partial = {"Attributes": ["essential oil", "natural ingredients"], "Title": "", "BulletPoints": [], "Description": ""}
    assert get_attribute_reward(partial, goal) == (2 / 3, 2)
    in_text = {"Attributes": [], "Title": "", "BulletPoints": ["This shampoo has essential oils and smells like lemons"],
               "Description": "Best shampoo on the market, made with natural ingredients"}
    assert get_attribute_reward(in_text, goal) == (2 / 3, 2)
    none = {"Attributes": ["tea bag", "earl gray", "lipton"], "Title": "English tea for breakfast",
            "BulletPoints": ["Soothing aroma", "Calming, great feeling"],
            "Description": "Best tea made by Lipton, great to pair with breakfast"}
    assert get_attribute_reward(none, goal) == (0, 0)


def test_option_reward_and_colors():
    assert get_option_reward(["pack of 12", "grey", "XL"], ["grey", "XL", "pack of 12"]) == (1, 3)
    assert get_option_reward(["pack of 12", "blue", "XL"], ["grey", "XL", "pack of 12"]) == (2 / 3, 2)
    assert get_option_reward(["pack of 12", "powder snow", "XL"], ["cool powder snow", "XL", "pack of 12"]) == (1, 3)
    assert get_option_reward(["goal 1", "goal 2"], []) == (None, 0)
    assert get_option_reward([], ["goal 1", "goal 2"]) == (0, 0)
    # upstream's COLOR_SET and its alphabetical first-match: shades collapse onto the first colour word
    assert len(COLOR_SET) == 102 and COLOR_SET[:3] == ["alabaster", "apricot", "aqua"] and COLOR_SET[-1] == "yellow"
    assert normalize_color("deep navy") == "navy" and normalize_color("light blue") == "blue"
    assert normalize_color("dark grey") == "dark" and normalize_color("rose gold") == "gold"
    assert normalize_color("olive green") == "green" and normalize_color("peppermint") == "mint"
    assert normalize_color("x-large") == "x-large"
    assert get_option_reward(["blue"], ["light blue"]) == (1, 1)  # a "light blue" goal takes plain blue
    # thefuzz's preprocessing: "large" matches an "x-large" goal, as upstream
    assert get_option_reward(["large"], ["x-large"]) == (1, 1)


def test_get_reward_values():
    goal = {"query": "Query 1", "product_category": "a › b › c",
            "name": "Mens D.O.N. Issue 2 Gca Basketball Sneakers Shoes Casual - Off White",
            "attributes": ["tea tree", "essential oils", "natural ingredients"],
            "goal_options": {"color": "grey", "size": "XL"}, "price_upper": 40.00}
    bought = {"query": "Query 1", "product_category": "a › b › c", "name": goal["name"],
              "Attributes": ["tea tree", "essential oil", "natural ingredients"], "Title": "", "BulletPoints": [],
              "Description": ""}
    options = {"color": "grey", "size": "XL"}
    assert get_reward(bought, goal, 35, options) == 1.0
    # 1 of 3 attributes (only in the description) + 2 options + price: 4 / 6. Upstream's test passes the
    # bullet points as a bare string that its join splits into letters, so "essential oils" is not found
    # there either; a list without it is the equivalent input.
    bought.update(Attributes=[], BulletPoints=["This shampoo smells like lemons"],
                  Description="Best shampoo on the market, made with natural ingredients")
    assert get_reward(bought, goal, 35, options) == pytest.approx(0.667, abs=1e-3)
    # a third goal option that was not selected: 4 / 7
    goal["goal_options"] = {"color": "grey", "size": "XL", "amount": "pack of 12"}
    assert get_reward(bought, goal, 35, options) == pytest.approx(0.5714, abs=1e-4)
    # r_type 0.5: other query, 1 shared category level, title score 1/6 (between 0.1 and 0.2)
    goal["name"] = "Saireed UL Listed 2 Prong Power Cord for JBL Bar 3.1 Bar 2.1 Channel 4K Ultra HD Soundbar"
    bought.update(name="BRST AC Power Cord Outlet Socket Cable Plug Lead for Panasonic SC-HT830V DVD/VCR Combo Home "
                  "Theater System", query="Query 2", product_category="a › d › e")
    score, parts = get_reward(bought, goal, 35, options, verbose=True)
    assert score == pytest.approx(0.2857, abs=1e-4) and parts["r_type"] == 0.5
    # over budget: the price term drops out
    assert get_reward(bought, goal, 41, options) == pytest.approx(0.5 * 3 / 7)


# ---------------------------------------------------------------------- catalogue and loaders
def test_generated_catalogue_is_deterministic_and_in_item_schema(tmp_path):
    a, b, c = generate_raw(0, 300), generate_raw(0, 300), generate_raw(1, 300)
    assert json.dumps(a) == json.dumps(b) and json.dumps(a) != json.dumps(c)
    items, ins = a
    assert len(items) == 300 and len({i["asin"] for i in items}) == 300
    assert len({i["category"] for i in items}) == 5
    for item in items:
        assert {"asin", "name", "category", "query", "product_category", "full_description", "small_description",
                "pricing", "customization_options", "images"} <= set(item)
        assert len(item["asin"]) == 10 and item["pricing"].startswith("$") and "›" in item["product_category"]
        info = ins[item["asin"]]
        assert set(info["instruction_attributes"]) <= set(info["attributes"])
        assert all(a in info["instruction"] for a in info["instruction_attributes"])
    save_raw(str(tmp_path), items, ins, suffix="_1000")
    assert load_data_dir(str(tmp_path)) == load_products(items, ins)


def test_loader_on_real_format_files():
    products = load_data_dir(DATA)
    assert [p["asin"] for p in products] == ["B07TEST001", "B07TEST002", "B07TEST003", "B07TEST004"]
    shirt, tea, speaker, shampoo = products
    assert shirt["Title"] == "Brightline Men's Slim Fit Cotton T-Shirt" and shirt["query"] == "men's t-shirts"
    assert shirt["options"] == {"size": ["small", "x-large"], "color": ["black", "navy | white"]}
    assert shirt["Price"] == "$15.99" and shirt["pricing"] == [15.99]
    assert tea["Price"] == "$4.5 to $9.5" and tea["pricing"] == [4.5, 9.5] and tea["options"] == {}
    assert tea["BulletPoints"] == ["Calming blend for the evening"]
    assert speaker["Price"] == "$100.0" and speaker["Rating"] == "N.A."
    assert shampoo["Attributes"] == ["DUMMY_ATTR"] and shampoo["instruction_text"] is None
    human = load_data_dir(DATA, human_goal_file="items_human_ins.json")
    assert len(human[0]["instructions"]) == 2


def test_missing_data_files_raise_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="items_shuffle_1000.json.*setup.sh"):
        load_data_dir(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a folder"):
        WebShopEnv(data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="items_human_ins_x.json"):
        WebShopEnv(data_dir=DATA, human_goals=True, human_goal_file="items_human_ins_x.json")
    with pytest.raises(ValueError, match="data_dir"):
        WebShopEnv(human_goals=True)  # crowd-written goals exist only for the real catalogue


def test_near_duplicates_miss_their_originals_goals_in_one_respect():
    """Each near-duplicate keeps the type, head and the rest, and changes one wanted attribute, one
    option value or the price; the original's goals it is built against then fail on it."""
    rng = random.Random(4)
    changes = set()
    for trial in range(60):
        spec = catalogue._spec(rng, trial % len(catalogue._TYPES))
        dup = catalogue._near_duplicate(spec, rng)
        same = ("type", "head", "shown", "for")
        assert [dup[k] for k in same] == [spec[k] for k in same]
        diffs = [dup["attrs"] != spec["attrs"], dup["options"] != spec["options"], dup["price"] != spec["price"]]
        assert sum(diffs) == 1, (spec, dup)
        changes.add(diffs.index(True))
        items, ins = zip(*(catalogue._raw_item(s, f"B0TEST{i:04d}", rng) for i, s in enumerate((spec, dup))))
        base, copy = load_products(list(items), {it["asin"]: i for it, i in zip(items, ins)})
        goals, prices = build_goals([base])
        prices[copy["asin"]] = build_goals([copy])[1][copy["asin"]]
        fails = [reachable_score(prices, copy, g)[0] < 1.0 for g in goals]
        assert all(reachable_score(prices, base, g)[0] == 1.0 for g in goals)
        assert all(fails) if not diffs[1] else any(fails)
    assert changes == {0, 1, 2}


def test_catalogue_has_few_full_matches_per_goal(shop):
    """Products whose best option choice scores 1.0, over the first 40 test goals: 220 in all, mean
    5.5, median 4 (the catalogue before near-duplicates and category attributes: 556, 13.9, 9.5)."""
    nouns = {p["asin"]: set(name_nouns(p["name"])) for p in shop.products}
    counts = [sum(1 for p in shop.products if nouns[p["asin"]] & set(name_nouns(g["name"]))
                  and reachable_score(shop.prices, p, g)[0] == 1.0) for g in shop.split_goals("test")[:40]]
    assert all(c >= 1 for c in counts)  # the goal's own product
    assert sum(counts) == 220 and sorted(counts)[20] == 4


# ---------------------------------------------------------------------- goals and splits
def test_goals_from_tiny_files():
    products = load_data_dir(DATA)
    goals, prices = build_goals(products)
    assert len(goals) == 4 + 1 + 3  # option combinations of the shirt, the tea, the speaker
    assert prices["B07TEST001"] == 15.99 and 4.5 <= prices["B07TEST002"] <= 9.5 and prices["B07TEST003"] == 100.0
    texts = [g["instruction_text"] for g in goals]
    assert SHIRT in texts
    assert sorted(g["index"] for g in goals) == list(range(8))
    assert build_goals(load_data_dir(DATA))[0] == goals  # the fixed permutation
    human, _ = build_goals(load_data_dir(DATA, human_goal_file="items_human_ins.json"), human=True)
    assert len(human) == 3  # the instruction without attributes is skipped, as upstream
    speaker = next(g for g in human if g["asin"] == "B07TEST003")
    assert speaker["goal_options"] == ["red"]
    assert speaker["instruction_text"].startswith("a red waterproof speaker please, and price lower than 1")


def test_split_ranges_are_disjoint():
    assert split_ranges(12000) == {"test": (0, 500), "val": (500, 1500), "train": (1500, 12000)}
    for n in (3, 8, 100, 2999, 3000, 5000):
        r = split_ranges(n)
        assert r["test"][0] == 0 and r["test"][1] == r["val"][0] and r["val"][1] == r["train"][0]
        assert r["train"][1] == n and all(b > a for a, b in r.values())
    with pytest.raises(ValueError):
        split_ranges(2)


def test_default_splits(shop):
    assert len(shop.goals) > 10000
    assert shop.ranges == {"test": (0, 500), "val": (500, 1500), "train": (1500, len(shop.goals))}
    sizes = {s: WebShopEnv(split=s).num_tasks() for s in ("train", "val", "test")}
    assert sizes["test"] == 500 and sizes["val"] == 1000 and sum(sizes.values()) == len(shop.goals)
    keys = {s: {(g["asin"], g["instruction_text"]) for g in shop.split_goals(s)} for s in sizes}
    assert len(keys["train"]) == sizes["train"]  # goals are distinct
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    # the permutation does not depend on the env seed
    assert WebShopEnv(split="val", seed=5).goals == WebShopEnv(split="val", seed=6).goals


# ---------------------------------------------------------------------- search
def test_search_engine():
    assert [s_stem(w) for w in ["shirts", "berries", "shoes", "glass", "bus", "cases"]] == \
        ["shirt", "berry", "shoe", "glass", "bus", "case"]
    engine = SearchEngine(load_data_dir(DATA))
    assert engine.search("waterproof speaker")[0] == "B07TEST003"
    assert engine.search("herbal teas")[0] == "B07TEST002"
    assert engine.search("the of and") == [] and engine.search("zzzz") == []


def test_expert_query_drops_options_and_price(shop):
    goal = next(g for g in shop.goals if g["goal_options"] and "price lower" in g["instruction_text"])
    q = expert_query(goal)
    assert "price" not in q and ":" not in q and q == q.lower() and q
    engine_hits = shop.engine.search(q)
    assert len(engine_hits) == 50


# ---------------------------------------------------------------------- pages and actions
def test_page_transitions_and_texts():
    env = _tiny()
    obs, info = env.reset(options={"index": 0})
    assert info["goal"] == SHIRT and info["instruction"] == f"{INSTRUCTION}\nInstruction: {SHIRT}"
    # verl-agent's format_obs: the parts after the goal text, each quoted
    assert env.browser.observation() == f"WebShop [SEP] Instruction: [SEP] {SHIRT} [SEP] Search"
    assert obs == "'Search'"
    assert info["admissible_actions"] == ["search[<your query>]"]
    head = "Back to Search"

    obs, r, term, trunc, info = env.step(_act("search[Slim fit T-shirt, waterproof tea]"))
    assert info["action_valid"] and info["action"] == "search[slim fit t-shirt, waterproof tea]" and r == 0.0
    assert obs == ("'Back to Search' [SEP] 'Page 1 (Total results: 3)' [SEP] 'Next >' [SEP] "
                   "'B07TEST001' [SEP] 'Brightline Men's Slim Fit Cotton T-Shirt' [SEP] '$15.99' [SEP] "
                   "'B07TEST002' [SEP] 'Evergreen Organic Chamomile Herbal Tea, 20 Tea Bags' [SEP] '$4.5 to $9.5' [SEP] "
                   "'B07TEST003' [SEP] 'Nimbus Waterproof Bluetooth Speaker' [SEP] '$100.0'")
    assert env.browser.observation() == (
        f"Instruction: [SEP] {SHIRT} [SEP] Back to Search [SEP] Page 1 (Total results: 3) [SEP] Next > [SEP] "
        "B07TEST001 [SEP] Brightline Men's Slim Fit Cotton T-Shirt [SEP] $15.99 [SEP] "
        "B07TEST002 [SEP] Evergreen Organic Chamomile Herbal Tea, 20 Tea Bags [SEP] $4.5 to $9.5 [SEP] "
        "B07TEST003 [SEP] Nimbus Waterproof Bluetooth Speaker [SEP] $100.0")
    assert info["admissible_actions"] == ["click[back to search]", "click[next >]", "click[b07test001]",
                                          "click[b07test002]", "click[b07test003]"]
    results = obs

    obs, *_, info = env.step(_act("click[b07test001]"))
    item = _quoted(f"{head} [SEP] < Prev [SEP] size [SEP] small [SEP] x-large [SEP] color [SEP] black [SEP] "
                   "navy | white [SEP] Brightline Men's Slim Fit Cotton T-Shirt [SEP] Price: $15.99 [SEP] "
                   "Rating: N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now")
    assert obs == item
    assert info["admissible_actions"] == [
        "click[back to search]", "click[< prev]", "click[description]", "click[features]", "click[reviews]",
        "click[buy now]", "click[small]", "click[x-large]", "click[black]", "click[navy | white]"]
    assert env.step(_act("click[< prev]"))[0] == results
    env.step(_act("click[b07test001]"))
    description = _quoted(f"{head} [SEP] < Prev [SEP] A soft crew neck t-shirt for everyday wear.")
    assert env.step(_act("click[description]"))[0] == description
    assert env.step(_act("click[< prev]"))[0] == item
    assert env.step(_act("click[features]"))[0] == \
        _quoted(f"{head} [SEP] < Prev [SEP] MACHINE WASH: keeps its shape [SEP] Short sleeve crew neck")
    assert env.step(_act("click[< prev]"))[0] == item
    assert env.step(_act("click[reviews]"))[0] == "'Back to Search' [SEP] '< Prev'"
    env.step(_act("click[< prev]"))
    obs, r, term, trunc, info = env.step(_act("click[black]"))
    assert obs == item and info["action_valid"] and not term
    env.step(_act("click[small]"))
    assert env.browser.options == {"color": "black", "size": "small"}
    obs, r, term, trunc, info = env.step(_act("click[buy now]"))
    assert term and not trunc and r == 10.0 and info["won"] and info["success"]
    assert info["metrics"] == {"score": 1.0, "success": 1.0, "purchased": 1.0, "invalid_actions": 0.0,
                               "valid_action_ratio": 1.0, "inadmissible_actions": 0.0, "num_searches": 1.0}
    assert obs.startswith("Thank you for shopping with us!") and info["admissible_actions"] == []
    assert info["turn"] == 13
    with pytest.raises(RuntimeError):
        env.step(_act("click[buy now]"))


def test_partial_purchase_and_reward_scale():
    env = _tiny(reward_scale=1.0)
    env.reset(options={"index": 0})
    env.step(_act("search[t-shirt]"))
    env.step(_act("click[b07test001]"))
    env.step(_act("click[x-large]"))  # wrong size, no color
    obs, r, term, trunc, info = env.step(_act("click[buy now]"))
    # type 1.0 x (2 attributes + 0 options + price) / (2 + 2 + 1)
    assert term and r == 0.0 and not info["won"] and info["metrics"]["score"] == pytest.approx(0.6)
    env.reset(options={"index": 0})
    env.step(_act("search[t-shirt]"))
    env.step(_act("click[b07test001]"))
    env.step(_act("click[small]"))
    env.step(_act("click[black]"))
    assert env.step(_act("click[buy now]"))[1] == 1.0


def test_results_paging_and_back_to_search(shop):
    env = WebShopEnv(split="val")
    env.reset(options={"index": 0})
    obs, *_, info = env.step(_act("search[machine wash]"))
    assert "Page 1 (Total results: 50)" in obs and "< Prev" not in obs and "click[< prev]" not in info["admissible_actions"]
    first = obs
    asins = [a for a in info["admissible_actions"] if a.startswith("click[b0")]
    assert len(asins) == 10
    obs, *_, info = env.step(_act("click[next >]"))
    assert "'Page 2 (Total results: 50)' [SEP] '< Prev' [SEP] 'Next >'" in obs
    assert "click[< prev]" in info["admissible_actions"]
    assert not set(asins) & set(info["admissible_actions"])
    assert env.step(_act("click[< prev]"))[0] == first
    for _ in range(5):
        obs, *_ = env.step(_act("click[next >]"))
    assert "Page 6 (Total results: 50)" in obs and obs.endswith("'Next >'")  # past the last product: an empty page
    obs, *_, info = env.step(_act("click[back to search]"))
    assert obs == "'Search'" and info["admissible_actions"] == ["search[<your query>]"]


# ---------------------------------------------------------------------- validity (verl-agent's rule by default)
MALFORMED_NOOPS = [                                             # format failures the game ignores
    "click[b07test001]",                                        # no tags: the tail goes to the game, unclickable
    "<think>x</think><action>search[t-shirt]",                  # unclosed: tail "tion>search[t-shirt]" is no command
    "",
]
MALFORMED_EXECUTED = [                                          # format failures whose action still runs
    "<action>search[t-shirt]</action>",                         # no <think>
    "<think>x<action>search[t-shirt]</action>",                 # no </think>
    "<think>买</think><action>search[t-shirt]</action>",          # CJK
    "I will search[slim t-shirt]",                              # no tags: the last 20 characters are a search
]
INADMISSIBLE = [                                                # well-formed, but the game does nothing
    _act("click[b07test001]"),                                  # not clickable on the search page
    _act("search[]"),
    _act("search[   ]"),
    _act("buy[t-shirt]"),
    _act("search t-shirt"),
    _act("click [b07test001]"),                                 # WebShop's regex needs "click[" exactly
    "<think>x</think><action></action>",
    "</action><think>x</think><action>search[t-shirt]",         # closing tag first: an empty action
]


def _one_step(response, **kw):
    env = _tiny(**kw)
    obs0, info0 = env.reset(options={"index": 0})
    return obs0, info0, env.step(response)


@pytest.mark.parametrize("response", MALFORMED_NOOPS)
def test_malformed_responses_are_invalid_and_penalised(response):
    obs0, info0, (obs, r, term, trunc, info) = _one_step(response)
    assert obs == obs0 and r == 0.0 and not term and not trunc
    assert info["action_valid"] is False and info["penalty"] == pytest.approx(0.1) and info["action"] == ""
    assert info["admissible_actions"] == info0["admissible_actions"]


@pytest.mark.parametrize("response", MALFORMED_EXECUTED)
def test_malformed_actions_still_run_as_in_verl_agent(response):
    """verl-agent sends the projected action to the game whatever the format check says."""
    _, _, (obs, r, _, _, info) = _one_step(response)
    assert obs.startswith("'Back to Search' [SEP] 'Page 1 (Total results: ") and r == 0.0
    assert info["action"] in ("search[t-shirt]", "search[slim t-shirt]")
    assert info["action_valid"] is False and info["penalty"] == 0.1
    # strict: an invalid step changes nothing
    obs0, _, (obs, r, _, _, info) = _one_step(response, invalid_rule="strict")
    assert obs == obs0 and r == 0.0 and not info["action_valid"] and info["penalty"] == 0.1


@pytest.mark.parametrize("response", INADMISSIBLE)
def test_inadmissible_commands_are_free_noops(response):
    obs0, info0, (obs, r, term, trunc, info) = _one_step(response)
    assert obs == obs0 and r == 0.0 and not term and not trunc
    assert info["action_valid"] is True and info["penalty"] == 0.0
    assert info["admissible_actions"] == info0["admissible_actions"]
    # strict: invalid and penalised, still nothing changes
    obs0, _, (obs, r, _, _, info) = _one_step(response, invalid_rule="strict")
    assert obs == obs0 and r == 0.0 and info["action_valid"] is False and info["penalty"] == pytest.approx(0.1)


def test_search_runs_from_any_page_and_bad_clicks_return_the_same_page():
    for rule in ("format", "strict"):
        env = _tiny(invalid_action_penalty=0.5, require_think=False, invalid_rule=rule)
        env.reset(options={"index": 0})
        assert env.step("<action>search[t-shirt]</action>")[4]["action_valid"]  # think not required
        page = env._observation()
        for bad in ["click[buy now]", "click[black]", "click[b07test004]", "click[search]"]:
            obs, r, *_, info = env.step(_act(bad))
            assert obs == page and r == 0.0 and info["action_valid"] is (rule == "format")
            assert info["penalty"] == (0.0 if rule == "format" else 0.5)
        env.step(_act("click[b07test001]"))
        page = env._observation()
        for bad in ["click[next >]", "click[b07test003]", "click[purple]"]:
            obs, *_, info = env.step(_act(bad))
            assert obs == page and info["action_valid"] is (rule == "format")
        # a search from the item page opens the new results, as WebShop's text env does
        obs, r, *_, info = env.step(_act("search[herbal tea]"))
        assert info["action_valid"] and info["penalty"] == 0.0 and env.browser.page == "results"
        assert "'B07TEST002'" in obs and env.browser.keywords == "herbal tea" and env.browser.options == {}


def test_invalid_rule_is_checked():
    with pytest.raises(ValueError, match=r"invalid_rule='loose'.*allowed values: format, strict"):
        _tiny(invalid_rule="loose")


def test_step_cap_truncates_and_counts_invalid_and_inadmissible_steps():
    env = _tiny()
    env.reset(options={"index": 1})
    env.step(_act("search[speaker]"))
    env.step("no tags at all")                                   # malformed
    env.step(_act("click[< prev]"))                              # page 1 has no "< prev": inadmissible
    for turn in range(4, 16):
        obs, r, term, trunc, info = env.step(_act("click[< prev]" if turn % 2 else "click[next >]"))
        if trunc:
            break
    assert turn == 15 == env.max_steps and trunc and not term and r == 0.0
    assert info["won"] is False and info["metrics"]["score"] == 0.0 and info["metrics"]["purchased"] == 0.0
    assert info["metrics"]["invalid_actions"] == 1.0 and info["metrics"]["inadmissible_actions"] == 1.0
    assert info["metrics"]["valid_action_ratio"] == pytest.approx(14 / 15)
    env = _tiny(invalid_rule="strict")
    env.reset(options={"index": 1})
    env.step(_act("search[speaker]"))
    env.step("no tags at all")
    env.step(_act("click[< prev]"))
    for _ in range(12):
        obs, r, term, trunc, info = env.step(_act("click[next >]"))
    assert trunc and info["metrics"]["invalid_actions"] == 2.0 and info["metrics"]["inadmissible_actions"] == 1.0
    assert info["metrics"]["valid_action_ratio"] == pytest.approx(13 / 15)


def test_parsers():
    response = "<think>a</think> <ACTION> Click[Buy Now] </action> <action>x</action>"
    assert extract_action(response) == ("click[buy now]", True)
    assert extract_action("<action>click[x]</action>", require_think=False) == ("click[x]", True)
    assert extract_action("<action>click[x]</action>") == ("click[x]", False)
    assert extract_action("<THINK>a</THINK><action>click[x]</action>") == ("click[x]", False)  # case-sensitive
    assert extract_action("</action><action>click[x]", require_think=False) == ("", True)  # closing tag first
    assert extract_action("Thinking... I pick CLICK[Buy Now]") == ("g... i pick click[buy now]"[-20:], False)
    assert extract_action("<think>a</think>" + "x" * 30) == ("x" * 20, False)
    # WebShop's parse_action: (.+)\[(.+)\] from the start, the name exactly search or click, no stripping
    assert parse_action("click[ < prev ]") == ("click", " < prev ")
    assert parse_action("click[x] now") == ("click", "x")
    assert parse_action("search[a [b] c]") == ("", "")  # the greedy name is "search[a "
    assert parse_action("click [x]") == ("", "") and parse_action("clicks[x]") == ("", "")
    assert parse_action("search[]") == ("", "")
    assert format_observation("Instruction: [SEP] g [SEP] Back to Search [SEP] a, b", "g") == "'Back to Search' [SEP] 'a, b'"
    assert format_observation("Thank you [SEP] 0.5", "g") == "Thank you [SEP] 0.5"


_WORDS = ["click[", "search[", "]", "<think>", "</think>", "<action>", "</action>", "buy now", "< prev", "next >",
          "back to search", "b07test001", "b07test003", "black", "small", "t-shirt", " ", "description", "\u4e2d"]


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    env = _tiny()
    env.reset(options={"index": 0})
    obs, r, term, trunc, info = env.step(text)
    assert isinstance(obs, str) and isinstance(info["action_valid"], bool) and r == 0.0
    assert info["penalty"] == (0.0 if info["action_valid"] else 0.1)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 30), st.lists(st.sampled_from(_WORDS), max_size=6).map("".join)),
                min_size=1, max_size=20), st.sampled_from(["format", "strict"]))
def test_random_walks_never_raise(moves, rule):
    """Mix admissible actions (an int picks one) with junk; under the strict rule an invalid step
    never moves the page, under either rule the penalty matches the validity flag."""
    env = _tiny(invalid_rule=rule)
    env.reset(options={"index": 2})
    for move in moves:
        before, admissible = env.browser.observation(), env.browser.admissible_actions()
        if isinstance(move, int):
            action = admissible[move % len(admissible)].replace("<your query>", "slim fit t-shirt")
            response, expect_valid = _act(action), True
        else:
            response, expect_valid = move, None
        obs, r, term, trunc, info = env.step(response)
        if expect_valid:
            assert info["action_valid"]
        assert info["penalty"] == (0.0 if info["action_valid"] else 0.1) and r in (0.0, 10.0)
        if rule == "strict" and not info["action_valid"]:
            assert env.browser.observation() == before and env.browser.admissible_actions() == admissible
        assert 0.0 <= env.browser.score <= 1.0 if env.browser.score is not None else True
        if term or trunc:
            assert 0.0 <= info["metrics"]["score"] <= 1.0
            break


def _task_config():
    from omegaconf import OmegaConf

    return OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "task", "webshop.yaml")).task


def test_prompt_cut_keeps_every_product_id_and_option():
    """The task config's observation cap, applied by the prompt builder, keeps every clickable of every
    results page (all five pages of the first search of 60 goals) and item page; and of a made-up page
    of the catalogue's ten longest titles and prices (the old raw pages at the old 1,100 cap lost ids)."""
    from src.rollout.prompts import PromptBuilder

    cfg = _task_config().sampler.prompt_builder
    builder = PromptBuilder(history_length=cfg.history_length, max_observation_chars=cfg.max_observation_chars)
    env = WebShopEnv(split="test")
    checked = 0
    for i in range(60):
        env.reset(options={"index": i})
        b = env.browser
        b.search(expert_query(b.goal))
        for page in range(1, 6):
            b.page, b.page_num, b.asin = "results", page, None
            products = b.page_products()
            shown = builder.render_text("task", env._observation())
            assert all(f"'{p['asin']}'" in shown for p in products), (i, page)
            checked += bool(products)
            for p in products[:2]:
                b.page, b.asin = "item", p["asin"]
                shown = builder.render_text("task", env._observation())
                assert all(f"'{v}'" in shown for values in p["options"].values() for v in values)
    assert checked >= 250
    longest = sorted(env.shop.products, key=lambda p: -len(p["Title"]) - len(p["Price"]))[:10]
    b.results, b.page, b.page_num = [p["asin"] for p in longest], "results", 1
    page = env._observation()
    assert len(page) < cfg.max_observation_chars and all(f"'{p['asin']}'" in builder.render_text("t", page)
                                                         for p in longest)


def test_validation_plays_test_goals_and_training_never_does():
    cfg = _task_config()
    assert cfg.val_split == "test" and 0 < cfg.val_episodes <= 500 and cfg.val_batch_size <= cfg.val_episodes
    env_cfg = {k: v for k, v in cfg.env.items()}
    assert env_cfg["invalid_rule"] == "format" and env_cfg["invalid_action_penalty"] == 0.1
    test = WebShopEnv(split=cfg.val_split, **env_cfg)
    train = WebShopEnv(split="train", **env_cfg)
    assert [g["index"] for g in test.goals] == list(range(500))  # verl-agent's test goals [0, 500)
    validated = {(test.goals[i]["asin"], test.goals[i]["instruction_text"]) for i in range(cfg.val_episodes)}
    assert min(g["index"] for g in train.goals) == 1500
    drawn = {(g["asin"], g["instruction_text"]) for g in
             (train.goals[train.task_index(seed, None, train._rng)] for seed in range(2000))}
    assert not drawn & validated and not {(g["asin"], g["instruction_text"]) for g in train.goals} & validated


# ---------------------------------------------------------------------- expert
def _play_expert(env, index):
    env.reset(options={"index": index})
    for _ in range(env.max_steps):
        response = env.expert_response()
        assert response.startswith("<think>") and response.endswith("</action>")
        obs, r, term, trunc, info = env.step(response)
        assert info["action_valid"], (index, response)
        if term or trunc:
            return info


def _expert_rates(env, indices):
    infos = [_play_expert(env, i) for i in indices]
    n = len(infos)
    return (sum(i["metrics"]["score"] for i in infos) / n, sum(i["won"] for i in infos) / n,
            sum(i["metrics"]["purchased"] for i in infos) / n)


def test_experts_on_validation_goals():
    """The omniscient expert is the upper bound; the grounded shopper, reading only the pages, misses goals
    whose distinguishing attributes the titles do not show, as a person would (WebShop's human experts:
    82.1 score, 59.6% success)."""
    indices = range(0, 1000, 5)
    # measured on all 1000 val goals (default catalogue): score 1.000, success 1.000, 4.5 steps per episode
    score, success, _ = _expert_rates(WebShopEnv(split="val", expert="omniscient"), indices)
    assert score >= 0.98 and success >= 0.95
    # measured on every second val goal: score 0.929, success 0.790, 6.0 steps; test goals 0.909 / 0.756
    score, success, purchased = _expert_rates(WebShopEnv(split="val"), indices)
    assert 0.85 <= score < 0.98 and 0.65 <= success < 0.95 and purchased == 1.0


def test_expert_on_tiny_and_human_goals():
    for expert in EXPERTS:
        for env in (_tiny(expert=expert), WebShopEnv(split="train", data_dir=DATA, human_goals=True, expert=expert)):
            infos = [_play_expert(env, i) for i in range(env.num_tasks())]
            assert all(i["metrics"]["purchased"] for i in infos)
            if expert == "omniscient":
                assert all(i["won"] for i in infos)


def _hide_catalogue_fields(env, rng):
    """Scramble what no page shows before a sub-page is opened: attributes, description, bullet points."""
    for p in env.shop.products:
        p["Attributes"] = rng.sample(["waterproof", "organic", "vegan", "wireless", "slim fit"], 2)
        p["Description"] = p["BulletPoints"] = "x"


def test_grounded_shopper_reads_only_the_pages():
    """Scrambling the catalogue's hidden fields changes the omniscient expert's choices but not one response
    of the grounded shopper: what it does is a function of the pages and the instruction."""
    import copy

    def transcripts(expert, scramble):
        env = WebShopEnv(split="val", expert=expert)
        if scramble:
            shop = copy.copy(env.shop)
            shop.products = copy.deepcopy(env.shop.products)
            shop.by_asin = {p["asin"]: p for p in shop.products}
            env.shop = shop
            _hide_catalogue_fields(env, random.Random(0))
        out = []
        for i in range(0, 1000, 25):
            env.reset(options={"index": i})
            for _ in range(env.max_steps):
                response = env.expert_response()
                out.append(response)
                *_, term, trunc, _info = env.step(response)
                if term or trunc:
                    break
        return out

    assert transcripts("grounded", False) == transcripts("grounded", True)
    assert transcripts("omniscient", False) != transcripts("omniscient", True)


def test_grounded_shopper_leaves_products_it_cannot_buy_as_asked():
    """Over the budget or missing a requested option -> back to the results and the next candidate; the
    product it buys has every requested option it could see selected."""
    env = WebShopEnv(split="test")
    left = 0
    for i in range(0, 500, 4):
        env.reset(options={"index": i})
        for _ in range(env.max_steps):
            b = env.browser
            response = env.expert_response()
            if b.page == "item" and "go back" in response:
                left += 1
                budget = b.goal["price_upper"]
                assert (lowest_shown_price(b.product["Price"]) > budget
                        or len(choose_options(b.product, b.goal)) < len(b.goal["goal_options"])), response
            clicked = extract_action(response)[0][len("click["):-1]
            if b.page == "results" and clicked in {p["asin"].lower() for p in b.page_products()}:
                assert clicked not in [a.lower() for a in env._shopper.rejected], response
            *_, term, trunc, info = env.step(response)
            if term or trunc:
                break
        assert info["metrics"]["purchased"] == 1.0
    assert left > 10


# ---------------------------------------------------------------------- plumbing
def test_reset_selection_and_determinism():
    a, b = WebShopEnv(split="val", seed=1), WebShopEnv(split="val", seed=2)
    assert a.reset(options={"index": 7})[1]["task_id"] == "val/507"
    assert a.reset(options={"index": 7 + a.num_tasks()})[1]["task_id"] == "val/507"
    assert a.reset(seed=3)[1]["task_id"] == b.reset(seed=3)[1]["task_id"]
    assert WebShopEnv(split="val", seed=4).reset()[1] == WebShopEnv(split="val", seed=4).reset()[1]
    trace = []
    for env in (a, b):
        env.reset(options={"index": 11})
        steps = []
        for _ in range(env.max_steps):
            response = env.expert_response()
            obs, r, term, trunc, info = env.step(response)
            steps.append((response, obs, r))
            if term or trunc:
                break
        trace.append(steps)
    assert trace[0] == trace[1]


def test_registry_config_corpus_and_report():
    assert "webshop" in envs.list_envs()
    env = envs.make_env("webshop", split="test", seed=0, max_steps=15, invalid_action_penalty=0.1)
    assert isinstance(env, WebShopEnv) and env.max_steps == 15 and env.num_tasks() == 500
    with pytest.raises(ValueError):
        WebShopEnv(split="dev")
    texts = list(WebShopEnv.tokenizer_corpus(num_products=300, invalid_action_penalty=0.1, corpus_goals=5))
    assert all(isinstance(t, str) for t in texts) and INSTRUCTION in texts
    assert any(t.startswith("<think>") and "<action>search[" in t for t in texts)
    assert any("[SEP] 'Buy Now'" in t for t in texts)
    table = WebShopEnv.report({"task/score": 0.7234, "success": 0.55, "episode_return": 5.5})
    assert "| WebShop | 72.3 | 55.0 |" in table and "Score" in table and "Succ." in table
    assert WebShopEnv.report({}) == ""


def test_generated_shop_is_random_but_reproducible():
    rng = random.Random(0)
    small = get_shop(catalogue_seed=3, num_products=200)
    assert get_shop(catalogue_seed=3, num_products=200) is small
    goal = rng.choice(small.goals)
    assert goal["asin"] in small.by_asin
    assert goal["instruction_text"].startswith(small.by_asin[goal["asin"]]["instruction_text"])


class _FakeToken:
    def __init__(self, text, pos):
        self.text, self.pos_ = text, pos


def test_spacy_noun_parser_uses_the_pipelines_nouns(monkeypatch):
    """noun_parser=spacy reads NOUN / PROPN tokens from the pipeline (a stand-in here: spaCy's
    model is not installed offline), so the title score follows the parser, not the heuristic."""
    import envs.webshop.reward as reward

    tags = {"Portable": "ADJ", "Speaker": "NOUN", "Bose": "PROPN", "Wireless": "NOUN", "with": "ADP"}
    monkeypatch.setattr(reward, "spacy_pipeline", lambda: lambda text: [_FakeToken(w, tags.get(w, "X"))
                                                                        for w in text.split()])
    assert reward.name_nouns("Portable Bose Speaker with Wireless", "spacy") == ["bose", "speaker", "wireless"]
    # goal nouns {bose, speaker, wireless}; the product shares speaker and wireless: 2 / 3
    goal, product = {"name": "Bose Speaker Wireless"}, {"name": "Portable Speaker with Wireless"}
    assert reward.get_type_reward(product, goal, "spacy")["title_score"] == pytest.approx(2 / 3)
    # the heuristic drops "wireless" as an adjective: goal nouns {bose, speaker}, shared {speaker}
    assert reward.get_type_reward(product, goal, "heuristic")["title_score"] == pytest.approx(1 / 2)


def test_noun_parser_errors_name_what_to_install():
    import envs.webshop.reward as reward

    with pytest.raises(ValueError, match="allowed values: heuristic, spacy"):
        reward.name_nouns("x", "nltk")
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install -e \".\[webshop\]\""):
            reward.name_nouns("Bose Speaker", "spacy")


def test_tiny_tokenizer_reads_a_product_id_on_the_page_as_the_click_that_needs_it():
    """The WebShop task config's tokenizer (uncased, the catalogue's ids as atoms): the id a results page shows in
    capitals and the id its click writes are one and the same token, for every product of a results page;
    an expert response decodes back to itself. A cased BPE without atoms cuts the id into several pieces."""
    from omegaconf import OmegaConf

    from src.policy.model import tokenizer_atoms, tokenizer_training_text, train_tiny_tokenizer

    switches = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "task",
                                           "webshop.yaml")).task_tokenizer
    assert switches.lowercase and switches.atom_tokens
    atoms = tokenizer_atoms("webshop")
    assert len(atoms) == len(get_shop().products) and all(a == a.lower() and len(a) == 10 for a in atoms)
    texts = list(tokenizer_training_text("webshop"))
    uncased = train_tiny_tokenizer(texts, 4096, ["<think>", "</think>", "<action>", "</action>"], lowercase=True,
                                   atoms=atoms)
    cased = train_tiny_tokenizer(texts, 4096, ["<think>", "</think>", "<action>", "</action>"])
    env = WebShopEnv(split="test")
    env.reset(options={"index": 3})
    obs, _, _, _, info = env.step(env.expert_response())
    products = env.browser.page_products()
    assert products
    for p in products:
        (shown,) = uncased(f"'{p['asin']}'", add_special_tokens=False)["input_ids"][1:-1]
        click = uncased(f"click[{p['asin'].lower()}]", add_special_tokens=False)["input_ids"]
        assert shown in click and f"click[{p['asin'].lower()}]" in info["admissible_actions"]
        assert len(cased(p["asin"].lower(), add_special_tokens=False)["input_ids"]) > 3
    response = env.expert_response()
    assert "click[b" in response
    assert uncased.decode(uncased(response, add_special_tokens=False)["input_ids"]) == response
    assert "B0" in obs and uncased.decode(uncased(obs, add_special_tokens=False)["input_ids"]) == obs.lower()


def test_uncased_tiny_build_reads_text_with_its_own_tokenizer_after_loading(tmp_path):
    """A built (and then cached) uncased tiny policy tokenizes as its tokenizer was trained: transformers'
    AutoTokenizer would load it as a Qwen2Tokenizer, NFC and Qwen2's regex in place of Lowercase, and
    'B0X6DAWNJR' would come back as ten one-character pieces."""
    from src.policy.model import build_tiny_policy

    kwargs = dict(task="webshop", vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1, lowercase=True, atom_tokens=True)
    for built in (build_tiny_policy(str(tmp_path), **kwargs), build_tiny_policy(str(tmp_path), **kwargs)):  # build, load
        tok = built.tokenizer
        assert tok("'B0X6DAWNJR'", add_special_tokens=False)["input_ids"][1:-1] == \
            tok("b0x6dawnjr", add_special_tokens=False)["input_ids"]
        assert tok.decode(tok("Velium Usb", add_special_tokens=False)["input_ids"]) == "velium usb"
    assert len(list(tmp_path.iterdir())) == 1
