"""Tests of the deep-search task: world, corpus files, BM25 retrieval, SQuAD scoring and the env."""
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.deepsearch import DeepSearchEnv
from envs.deepsearch.env import INSTRUCTION, INVALID_FEEDBACK, TURN_LIMIT_TEXT, parse_action
from envs.deepsearch.retriever import BM25Retriever, format_docs, split_contents
from envs.deepsearch.scoring import exact_match, f1_score, normalize_answer
from envs.deepsearch.benchmark import bundled_questions
from envs.deepsearch.data import save_benchmark
from envs.deepsearch.world import WORK_NOUNS, build_world, get_world

PENALTY = 0.01


@pytest.fixture(scope="module")
def world():
    return get_world(0)


@pytest.fixture
def env():
    return DeepSearchEnv(split="train", seed=0, invalid_action_penalty=PENALTY)


def _dump(w):
    return json.dumps([w.corpus, bundled_questions(w)], sort_keys=True)


# ---------------------------------------------------------------------- world
def test_world_is_deterministic_and_seed_dependent(tmp_path):
    a, b, c = build_world(0), build_world(0), build_world(1)
    assert _dump(a) == _dump(b)
    assert _dump(a) != _dump(c)
    save_benchmark(a, str(tmp_path / "a"))
    save_benchmark(b, str(tmp_path / "b"))
    for name in ("corpus.jsonl", "nq/train.jsonl", "bamboogle/test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_names_unique_and_not_template_words(world):
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    name_tokens = {t.lower() for n in names for t in n.split() if t != "The" and t not in WORK_NOUNS}
    template_words = set()
    for doc in world.corpus:
        text = split_contents(doc["contents"])[1]
        for n in sorted(names, key=len, reverse=True):
            text = text.replace(n, " ")
        template_words.update(w.strip(".,").lower() for w in text.split())
    # invented names never coincide with an English word of the passage templates
    assert {"country", "city", "capital", "river", "company", "born", "novel"} <= template_words
    attr_values = {str(v).lower() for e in world.entities for v in e.attrs.values()}
    assert not name_tokens & (template_words - attr_values)


def test_corpus_is_flashrag_format(world):
    for doc, ent in zip(world.corpus, world.entities):
        assert set(doc) == {"id", "contents"} and isinstance(doc["id"], str)
        first, _, rest = doc["contents"].partition("\n")
        assert first == f'"{ent.name}"'
        assert rest and "\n" not in rest
        assert 15 <= len(doc["contents"].split()) <= 60
    assert len({d["id"] for d in world.corpus}) == len(world.corpus)
    assert len(world.corpus) == len(world.entities) + len(world.lookalike)


def test_lookalike_pages_have_near_duplicate_titles(world):
    titles = [split_contents(d["contents"])[0] for d in world.corpus[len(world.entities):]]
    assert len(titles) == len(world.lookalike) >= 0.15 * len(world.entities)
    for name, title in world.lookalike.items():
        assert title != name and name in title  # "Old Varnhold", "Trelix Foundation", ...
        assert title in titles and title not in world.by_name
    # every kind that has questions about names gets look-alikes
    assert {world.by_name[n].kind for n in world.lookalike} == {"country", "city", "person", "company"}


# ---------------------------------------------------------------------- retrieval
def test_retrieval_finds_expected_passage_and_layout(world):
    r = BM25Retriever(world.corpus, top_k=3)
    q = next(q for q in bundled_questions(world, "test", ["hotpotqa"]) if q["hops"] == 2
             and "earlier" not in q["question"] and "same country" not in q["question"])
    for name, query in zip(q["support"], q["queries"]):
        hits = r.search(query)
        assert len(hits) == 3 and name in [split_contents(h["contents"])[0] for h in hits]
    text = format_docs(hits)
    lines = text.split("\n")
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        assert re.match(rf"Doc {i}\(Title: [^\"]+\) \S", line)
    assert any(line.startswith(f"Doc {i}(Title: {q['support'][1]}) {q['support'][1]} ")
               and q["golden_answers"][0] in line for i, line in enumerate(lines, 1))
    batch = r.search_batch(q["queries"])
    assert [b[0] for b in batch] == [r.search(x)[0] for x in q["queries"]]
    assert r.search("the of and") == []  # stop-words only: no match at all


def test_unknown_retriever_names_the_key_and_allowed_values():
    with pytest.raises(ValueError, match=r"task.env.retriever.name='splade'.*\['bm25', 'dense', 'remote'\]"):
        DeepSearchEnv(retriever={"name": "splade"})


# ---------------------------------------------------------------------- scoring
def test_normalize_and_exact_match():
    assert normalize_answer("  The  Veldoria!  ") == "veldoria"
    assert normalize_answer("An apple, a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # 'the' only as a whole word
    assert exact_match("the Marnhold.", ["Marnhold"]) == 1.0
    assert exact_match("MARNHOLD", "marnhold") == 1.0
    assert exact_match("Marnhold city", ["Marnhold"]) == 0.0
    assert exact_match("1432", ["1431", "1432"]) == 1.0  # any alias
    assert exact_match("Orla  Vennick", ["orla vennick"]) == 1.0
    assert exact_match("", ["x"]) == 0.0


def test_f1_score():
    assert f1_score("Marnhold", ["Marnhold"]) == 1.0
    assert f1_score("Veldoria", ["Marnhold"]) == 0.0
    # pred tokens [city, of, marnhold] vs gold [marnhold]: 1 common -> P = 1/3, R = 1/1,
    # F1 = 2 * (1/3) * 1 / (1/3 + 1) = (2/3) / (4/3) = 0.5
    assert f1_score("the city of Marnhold", ["Marnhold"]) == pytest.approx(0.5)
    # gold [orla, vennick], pred [vennick]: P = 1, R = 1/2 -> F1 = 2/3; max over golds picks it
    assert f1_score("Vennick", ["Zentrix", "Orla Vennick"]) == pytest.approx(2 / 3)
    assert f1_score("a an the", ["x"]) == 0.0


# ---------------------------------------------------------------------- env
def _play_expert(env, index):
    obs, info = env.reset(options={"index": index})
    task = env._task
    assert obs == f"Question: {task['question']}"
    for turn in range(1, env.max_turns + 1):
        response = env.expert_response()
        obs, reward, terminated, truncated, step_info = env.step(response)
        assert step_info["action_valid"] and step_info["turn"] == turn
        if step_info["action"].startswith("<search>"):
            assert obs.startswith("<information>Doc 1(Title: ") and obs.endswith("</information>")
            # the passage this hop needs is among the retrieved ones
            assert f"(Title: {task['support'][turn - 1]})" in obs
        if terminated or truncated:
            return reward, terminated, step_info
    raise AssertionError("episode did not end")


def test_expert_answers_every_question_of_every_family_from_the_corpus():
    """The oracle follows each question's plan with the real retriever at the default 4 turns: every
    hop's passage is retrieved (top-3, look-alike pages present) and the answer scores EM 1."""
    for split in ("train", "test"):
        env = DeepSearchEnv(split=split)
        for i in range(env.num_tasks()):
            reward, terminated, info = _play_expert(env, i)
            assert terminated and reward == 1.0 and info["won"] and info["success"], (split, i)
            family = env._task["family"]
            assert info["metrics"]["em"] == info["metrics"][f"em_{family}"] == info["metrics"]["f1"] == 1.0
            assert info["metrics"]["num_searches"] == len(env._task["queries"])


def test_reset_info_and_selection(env):
    obs, info = env.reset(options={"index": 3})
    assert obs.startswith("Question: ") and info["instruction"] == f"{INSTRUCTION}\n{obs}"
    assert {"task_id", "question", "golden_answers", "family"} <= set(info)
    assert env.reset(options={"index": 3 + env.num_tasks()})[1]["task_id"] == info["task_id"]
    assert env.reset(seed=11)[1]["task_id"] == env.reset(seed=11)[1]["task_id"]
    a = [DeepSearchEnv(seed=5).reset()[1]["task_id"] for _ in range(2)]
    assert a[0] == a[1]
    assert env.num_tasks() == len(bundled_questions(get_world(0), "train"))
    assert len(INSTRUCTION.split()) <= 60


def test_registry_and_tokenizer_corpus():
    assert "deepsearch" in envs.list_envs()
    e = envs.make_env("deepsearch", split="test", seed=1)
    assert isinstance(e, DeepSearchEnv) and e.max_steps == 4
    texts = list(DeepSearchEnv.tokenizer_corpus(world_seed=0))
    assert all(isinstance(t, str) for t in texts)
    assert INSTRUCTION in texts and INVALID_FEEDBACK in texts
    assert any(t.startswith("<think>search ") and "<search>" in t for t in texts)
    assert any("<answer>" in t for t in texts)
    # every family's questions are in the tokenizer's text, out-of-domain ones included
    for q in bundled_questions(get_world(0), "test")[:14]:
        assert f"Question: {q['question']}" in texts


MALFORMED = [
    "I think the answer is Marnhold.",
    "<search>a</search><search>b</search>",
    "<search>Veldoria capital</search> then <answer>Marnhold</answer>",
    "<answer>x</answer><answer>y</answer>",
    "<answer> </answer>",
    "<search>\n\t</search>",
    "<search>unclosed query",
    "</search>Veldoria<search>",
    "<answer><answer>x</answer>",
    "<search><answer>x</answer></search>",
    "x" * 5000 + "<sea" + "\x00\ud7ff" * 2500,
    "答案是 <answer 北京",
    "",
]


@pytest.mark.parametrize("response", MALFORMED)
def test_malformed_responses_are_invalid_steps(env, response):
    env.reset(options={"index": 0})
    obs, reward, terminated, truncated, info = env.step(response)
    assert obs == INVALID_FEEDBACK == info["anchor_obs"]
    assert reward == pytest.approx(-PENALTY)
    assert not terminated and not truncated
    assert info["action_valid"] is False and info["action"] == "" and info["turn"] == 1
    info = env.step(env.expert_response())[4]
    assert info["turn"] == 2 and info["action_valid"]


def test_garbage_10kb_unicode():
    env = DeepSearchEnv(max_turns=2)
    env.reset(seed=0)
    garbage = "".join(chr(0x20 + (i * 7919) % 0x2FFF) for i in range(10_000))
    obs, reward, term, trunc, info = env.step(garbage)
    assert not info["action_valid"] and reward == pytest.approx(-0.01)
    obs, reward, term, trunc, info = env.step("\U0001F600 <search>")
    assert trunc and not term and info["won"] is False and reward == pytest.approx(-0.01)
    assert info["metrics"]["invalid_actions"] == 2.0 and info["metrics"]["answered"] == 0.0


def test_valid_variants_and_action_rewrap(env):
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("<think>hmm</think> <SEARCH>  Veldoria capital \n</Search> trailing")
    assert info["action_valid"] and info["action"] == "<search>Veldoria capital</search>" and reward == 0.0
    assert parse_action("<answer>x</answer>", require_think=True)[2] is False
    assert parse_action("<think>a</think><answer>x</answer>", require_think=True) == ("answer", "x", True)
    assert parse_action("<answer>x</answer><think>a</think>", require_think=True)[2] is False


def test_require_think_env():
    env = DeepSearchEnv(require_think=True)
    env.reset(options={"index": 0})
    assert not env.step("<answer>x</answer>")[4]["action_valid"]
    assert env.step(env.expert_response())[4]["action_valid"]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    env = DeepSearchEnv()
    env.reset(seed=1)
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(text)
        assert isinstance(obs, str) and isinstance(reward, float)
        assert isinstance(info["action_valid"], bool)
        if terminated or truncated:
            break


_FRAGMENTS = ["<search>", "</search>", "<answer>", "</answer>", "<think>", "</think>", "<SEARCH>",
              "</Answer >", "<information>", " ", "\n", "Veldoria", "capital", "\u00e9\u4e2d"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=12).map("".join))
def test_random_tag_soup_never_raises(text):
    env = DeepSearchEnv(max_turns=2)
    env.reset(seed=2)
    obs, reward, terminated, truncated, info = env.step(text)
    assert isinstance(obs, str) and info["turn"] == 1
    assert info["action_valid"] == (info["action"] != "")
    if not info["action_valid"]:
        assert obs == INVALID_FEEDBACK and reward == pytest.approx(-0.01)


def test_turn_limit_truncates_and_skips_last_search(env):
    env.reset(options={"index": 0})
    for turn in range(1, 5):
        obs, reward, terminated, truncated, info = env.step(f"<search>Veldoria capital {turn}</search>")
        assert info["action_valid"] and reward == 0.0 and not terminated
        if turn < 4:
            assert not truncated and obs.startswith("<information>")
    assert truncated and obs == TURN_LIMIT_TEXT and "<information>" not in obs
    assert info["won"] is False and info["success"] is False
    assert info["metrics"]["num_searches"] == 3.0 and info["metrics"]["answered"] == 0.0
    with pytest.raises(RuntimeError):
        env.step("<answer>x</answer>")


def test_answer_ends_episode(env):
    _, info0 = env.reset(options={"index": 1})
    obs, reward, terminated, truncated, info = env.step("<answer>definitely wrong</answer>")
    assert terminated and not truncated and reward == 0.0
    assert info["won"] is False and info["metrics"]["answered"] == 1.0 and info["turn"] == 1
    env.reset(options={"index": 1})
    gold = info0["golden_answers"][0]
    response = f"<think>ok</think><answer> the {gold.upper()}. </answer>"
    obs, reward, terminated, truncated, info = env.step(response)
    assert terminated and reward == 1.0 and info["won"] and info["success"]
    assert info["action"] == f"<answer>the {gold.upper()}.</answer>"
    with pytest.raises(RuntimeError):
        env.step("<answer>again</answer>")
