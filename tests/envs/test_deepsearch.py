"""Tests of the deep-search task: world, corpus files, BM25 retrieval, SQuAD scoring and the env."""
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.deepsearch import DeepSearchEnv
from envs.deepsearch.env import INSTRUCTION, INVALID_FEEDBACK, Projection, expert_response_for, project_action
from envs.deepsearch.retriever import BM25Retriever, information, passages_text, split_contents
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


def result_of(obs):
    """The ``result`` string of an ``<information>{"result": ...}</information>`` observation."""
    assert obs.startswith("<information>") and obs.endswith("</information>"), obs
    return json.loads(obs[len("<information>"):-len("</information>")])["result"]


def _dump(w):
    return json.dumps([w.corpus, bundled_questions(w)], sort_keys=True)


def expert_queries(env, index):
    """The queries of the expert's episode on question ``index``."""
    return [m.group(1) for t in env.expert_transcript(index) for m in [re.search("<search>(.*)</search>", t)] if m]


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
    env = DeepSearchEnv(split="test", families=["hotpotqa"])
    index = next(i for i, q in enumerate(env.tasks) if q["plan"]["ask"] == "chain")
    q, queries = env.tasks[index], expert_queries(env, index)
    for name, query in zip(q["support"], queries):
        hits = r.search(query)
        assert len(hits) == 3 and name in [split_contents(h["contents"])[0] for h in hits]
    text = passages_text(hits)
    lines = text.split("\n")
    assert len(lines) == 7 and lines[-1] == ""  # "Doc i: \"Title\"" and the passage's text, each line ended
    for i in range(3):
        assert re.fullmatch(rf'Doc {i + 1}: "[^"]+"', lines[2 * i]) and lines[2 * i + 1]
    assert any(lines[2 * i] == f'Doc {i + 1}: "{q["support"][1]}"' and q["golden_answers"][0] in lines[2 * i + 1]
               for i in range(3))
    batch = r.search_batch(queries)
    assert [b[0] for b in batch] == [r.search(x)[0] for x in queries]
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
def _words(text):
    return set(re.findall(r"\w+", text.lower()))


def test_expert_is_grounded_and_answers_every_question_of_every_family_from_the_corpus():
    """On all 3,390 questions at the default 4 turns, with the real retriever: every word of every
    query is a word of the question or of a passage retrieved earlier in the episode; each search
    retrieves the passage its hop needs (top-3, look-alike pages present); the answer is read from
    those passages (or is yes/no) and scores EM 1; every response stays under 150 characters."""
    for split in ("train", "test"):
        env = DeepSearchEnv(split=split)
        for i in range(env.num_tasks()):
            obs, info = env.reset(options={"index": i})
            task, seen, searches = env._task, _words(obs), 0
            terminated = truncated = False
            while not (terminated or truncated):
                response = env.expert_response()
                assert len(response) < 150, response
                obs, reward, terminated, truncated, step = env.step(response)
                assert step["action_valid"]
                kind, content = project_action(response)[:2]
                if kind == "search":
                    assert _words(content) <= seen, (task["question"], content)
                    assert f'"{task["support"][searches]}"\n' in result_of(obs)
                    searches += 1
                else:
                    assert content in ("yes", "no") or _words(content) <= seen
                seen |= _words(obs)
            assert terminated and reward == 1.0 and step["won"], (split, i)
            assert step["metrics"]["em"] == step["metrics"][f"em_{task['family']}"] == step["metrics"]["f1"] == 1.0
            assert searches == step["metrics"]["num_searches"] == len(task["support"])


def test_expert_reads_every_relation_as_the_world_states_it(world):
    """The expert's reader against world.py's passages: each relation's value as the entity's own
    passage states it, and nothing from a passage that does not state it (a city names its region)."""
    from envs.deepsearch.env import _RELATIONS, _read

    region = {e.name: e.attrs["region"] for e in world.of_kind("country")}
    for e in world.entities:
        text = split_contents(world.passage_of[e.name]["contents"])[1]
        facts = {rel: str(v) for rel, v in e.attrs.items() if rel in _RELATIONS}
        if e.kind == "city":
            facts["region"] = region[e.attrs["country"]]
        assert {rel: _read(rel, text) for rel in _RELATIONS if _read(rel, text) is not None} == facts, e.name


EXPERT_EPISODES = {
    "In which region is the country where the company that Gelan Nulov works for has its headquarters?": [
        "<think>I need the employer of Gelan Nulov.</think><search>Gelan Nulov works company</search>",
        "<think>The employer of Gelan Nulov is Larnex.</think><search>Larnex headquarters</search>",
        "<think>The headquarters of Larnex is Teimere.</think><search>Teimere country</search>",
        "<think>The country of Teimere is Kalavia. The region of Kalavia is Breigalaria.</think>"
        "<answer>Breigalaria</answer>"],
    "Which city on the river Grigrousel was founded in the year 1813?": [
        "<think>I need the one that fits every clue.</think><search>city river Grigrousel founded year 1813</search>",
        "<think>Grudor fits city river Grigrousel founded year 1813.</think><answer>Grudor</answer>"],
    "Which novel came out first, The Lonande Orchard or The Meisande Lantern?": [
        "<think>I need the publication year of The Lonande Orchard.</think><search>The Lonande Orchard novel</search>",
        "<think>The publication year of The Lonande Orchard is 1671.</think><search>The Meisande Lantern novel</search>",
        "<think>The publication year of The Lonande Orchard is 1671, of The Meisande Lantern 1580.</think>"
        "<answer>The Meisande Lantern</answer>"],
    "Are Degard and Somere in the same country?": [
        "<think>I need the country of Degard.</think><search>Degard country</search>",
        "<think>The country of Degard is Thatumoria.</think><search>Somere country</search>",
        "<think>The country of Degard is Thatumoria, of Somere Vrastondeth.</think><answer>no</answer>"],
}


@pytest.mark.parametrize("question", list(EXPERT_EPISODES))
def test_expert_states_what_it_read_and_searches_the_name_it_read(question):
    env = DeepSearchEnv(split="test")
    index = next(i for i, q in enumerate(env.tasks) if q["question"] == question)
    assert list(env.expert_transcript(index))[1::2] == EXPERT_EPISODES[question]


def test_expert_answers_unknown_without_the_fact_or_a_turn_to_search_it(monkeypatch):
    question = "Are Degard and Somere in the same country?"
    env = DeepSearchEnv(split="test", max_turns=2)
    index = next(i for i, q in enumerate(env.tasks) if q["question"] == question)
    unknown = "<think>The passages do not say.</think><answer>unknown</answer>"
    assert list(env.expert_transcript(index))[1::2] == EXPERT_EPISODES[question][:1] + [unknown]
    env = DeepSearchEnv(split="test")
    env.reset(options={"index": index})
    env.step("<search>Veldoria capital</search>")  # the policy's own search: the expert still runs its plan
    assert env.expert_response() == EXPERT_EPISODES[question][0]
    monkeypatch.setattr(env.retriever, "search", lambda query, k=None: [])
    assert result_of(env.step(env.expert_response())[0]) == "No search results found."
    assert env.expert_response() == unknown


def test_expert_without_a_plan_searches_the_question():
    """FlashRAG questions carry no plan: search the question, then the first golden answer (an
    upper bound: there is no reader of free text)."""
    task = {"question": "Who wrote Hamlet?", "golden_answers": ["William Shakespeare", "Shakespeare"]}
    assert expert_response_for(task, [], 4) == "<think>Search the question.</think><search>Who wrote Hamlet?</search>"
    assert expert_response_for(task, [(project_action("<search>x</search>"), "")], 4) == (
        "<think>The answer is in the passages.</think><answer>William Shakespeare</answer>")
    # no turn left to search: the plan-less expert gives up like the planned one
    assert expert_response_for(task, [], 1) == "<think>The passages do not say.</think><answer>unknown</answer>"


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
    # the expert's whole episodes (questions, search results, responses), as the warm start shows them
    test_env = DeepSearchEnv(split="test")
    for index in (0, 3, 5):
        transcript = list(test_env.expert_transcript(index))
        start = texts.index(transcript[0])
        assert texts[start:start + len(transcript)] == transcript
    # every family's questions are in the tokenizer's text, out-of-domain ones included
    for q in bundled_questions(get_world(0), "test")[:14]:
        assert f"Question: {q['question']}" in texts


# ---------------------------------------------------------------------- projection (verl-agent's search projection)
PROJECTIONS = [
    # (response, kind, content, well_formed)
    ("<think>hmm</think> <SEARCH>  Veldoria capital \n</Search> trailing", "search", "Veldoria capital", True),
    ("<answer>Marnhold</answer> <information>made up</information>", "answer", "Marnhold", True),
    ("<answer> </answer>", "answer", "", True),  # an empty block is well-formed
    ("<search>\n\t</search>", "search", "", True),
    # the first block is taken, but two of a tag or both tags make the response malformed
    ("<search>a</search><search>b</search>", "search", "a", False),
    ("<search>Veldoria capital</search> then <answer>Marnhold</answer>", "search", "Veldoria capital", False),
    ("<answer>Marnhold</answer> or <search>Veldoria capital</search>", "search", "Veldoria capital", False),
    ("<answer>x</answer><answer>y</answer>", "answer", "x", False),
    ("<answer><answer>x</answer>", "answer", "<answer>x", False),
    ("<search><answer>x</answer></search>", "search", "<answer>x</answer>", False),
    # no block: no action
    ("I think the answer is Marnhold.", "", "", False),
    ("<search>unclosed query", "", "", False),
    ("</search>Veldoria<search>", "", "", False),
    ("</search><answer>x</answer>", "", "", False),  # cut after the first </search>: nothing before it
    ("x" * 5000 + "<sea" + "\x00\ud7ff" * 2500, "", "", False),
    ("答案是 <answer 北京", "", "", False),
    ("", "", "", False),
]


@pytest.mark.parametrize("response, kind, content, well_formed", PROJECTIONS)
def test_projection_is_verl_agents(response, kind, content, well_formed):
    assert project_action(response) == Projection(kind, content, well_formed)
    assert project_action(response).action == (f"<{kind}>{content}</{kind}>" if kind else "")


def test_require_think_is_an_option():
    assert project_action("<answer>x</answer>").well_formed  # verl-agent checks no <think> for search
    assert project_action("<answer>x</answer>", require_think=True) == Projection("answer", "x", False)
    assert project_action("<think>a</think><answer>x</answer>", require_think=True) == Projection("answer", "x", True)
    assert not project_action("<answer>x</answer><think>a</think>", require_think=True).well_formed
    env = DeepSearchEnv(require_think=True)
    env.reset(options={"index": 0})
    assert not env.step("<search>q</search>")[4]["action_valid"]
    assert env.step(env.expert_response())[4]["action_valid"]


# ---------------------------------------------------------------------- invalid steps
NO_ACTION_RESPONSES = [r for r, kind, _, _ in PROJECTIONS if not kind]


@pytest.mark.parametrize("response", NO_ACTION_RESPONSES)
def test_a_response_without_action_sends_the_empty_string(env, response):
    """verl-agent: the action is "", the turn counts, no search runs, the observation is empty; the
    reward carries no penalty, ``info["penalty"]`` does."""
    env.reset(options={"index": 0})
    obs, reward, terminated, truncated, info = env.step(response)
    assert obs == "" == info["anchor_obs"] and reward == 0.0 and not terminated and not truncated
    assert info["action_valid"] is False and info["action"] == "" and info["turn"] == 1
    assert info["penalty"] == PENALTY
    info = env.step(env.expert_response())[4]
    assert info["turn"] == 2 and info["action_valid"] and info["penalty"] == 0.0


def test_malformed_response_with_an_action_executes_it_under_the_format_rule(env):
    env.reset(options={"index": 0})
    both = "<search>Veldoria capital</search> then <answer>Marnhold</answer>"
    obs, reward, terminated, _, info = env.step(both)
    assert result_of(obs) == passages_text(env.retriever.search("Veldoria capital", k=3))
    assert info["action"] == "<search>Veldoria capital</search>" and not terminated and reward == 0.0
    assert info["action_valid"] is False and info["penalty"] == PENALTY
    gold = env._task["golden_answers"][0]
    obs, reward, terminated, _, info = env.step(f"<answer>{gold}</answer><answer>wrong</answer>")
    assert terminated and obs == "" and reward == 1.0 and info["won"]  # the first answer is scored
    assert info["action_valid"] is False and info["penalty"] == PENALTY
    assert info["metrics"]["invalid_actions"] == 2.0 and info["metrics"]["valid_action_ratio"] == 0.0
    assert info["metrics"]["inadmissible_actions"] == 0.0


def test_last_turn_without_action_ends_and_scores_the_episode():
    env = DeepSearchEnv(max_turns=2, invalid_action_penalty=PENALTY)
    env.reset(seed=0)
    garbage = "".join(chr(0x20 + (i * 7919) % 0x2FFF) for i in range(10_000))
    obs, reward, term, trunc, info = env.step(garbage)
    assert not info["action_valid"] and reward == 0.0 and info["penalty"] == PENALTY and obs == ""
    obs, reward, term, trunc, info = env.step("\U0001F600 <search>")
    assert trunc and not term and obs == "" and reward == 0.0 and info["won"] is False
    assert info["metrics"]["invalid_actions"] == 2.0 and info["metrics"]["answered"] == 0.0


def test_invalid_feedback_option_shows_the_feedback_text():
    env = DeepSearchEnv(invalid_feedback=True)
    env.reset(options={"index": 0})
    obs, _, _, _, info = env.step("no tags at all")
    assert obs == INVALID_FEEDBACK and not info["action_valid"]
    obs = env.step("<search>a</search><search>b</search>")[0]  # an action ran: its results, not the text
    assert obs.startswith("<information>")


def test_strict_rule_counts_what_the_env_does_not_carry_out():
    """Empty query or answer and a search on the last turn: valid under ``format`` (executed as
    verl-agent does), invalid and not executed under ``strict``; ``inadmissible_actions`` counts them
    under both rules, apart from format failures."""
    steps = ["<search> </search>", "<search>a</search> <answer>b</answer>", "<answer></answer>"]
    outcomes = {}
    for rule in ("format", "strict"):
        env = DeepSearchEnv(max_turns=4, invalid_rule=rule, invalid_action_penalty=PENALTY)
        env.reset(options={"index": 0})
        outcomes[rule] = [env.step(r) for r in steps]
    fmt, strict = outcomes["format"], outcomes["strict"]
    # empty query: format runs it (nothing matches), strict runs nothing
    assert result_of(fmt[0][0]) == "No search results found." and fmt[0][4]["penalty"] == 0.0
    assert strict[0][0] == "" and strict[0][4]["penalty"] == PENALTY and strict[0][4]["action"] == ""
    # both tags: invalid under both; format runs the search, strict does not
    assert fmt[1][0].startswith("<information>") and strict[1][0] == ""
    assert fmt[1][4]["penalty"] == strict[1][4]["penalty"] == PENALTY
    # empty answer: format ends the episode (EM 0), strict goes on
    assert fmt[2][2] and fmt[2][4]["action_valid"] and fmt[2][1] == 0.0
    assert not strict[2][2] and not strict[2][4]["action_valid"] and strict[2][0] == ""
    assert fmt[2][4]["metrics"] == pytest.approx({"em": 0.0, "f1": 0.0, "answered": 1.0, "num_searches": 2.0,
                                                  "invalid_actions": 1.0, "valid_action_ratio": 2 / 3,
                                                  "inadmissible_actions": 2.0, "em_nq": 0.0})
    # strict, last turn: a search there is not run, so it is invalid too
    env = DeepSearchEnv(max_turns=4, invalid_rule="strict", invalid_action_penalty=PENALTY)
    env.reset(options={"index": 0})
    for r in steps:
        env.step(r)
    obs, reward, terminated, truncated, info = env.step("<search>Veldoria capital</search>")
    assert truncated and obs == "" and reward == 0.0 and info["penalty"] == PENALTY
    assert info["metrics"]["invalid_actions"] == 4.0 and info["metrics"]["inadmissible_actions"] == 3.0
    assert info["metrics"]["valid_action_ratio"] == 0.0 and info["metrics"]["num_searches"] == 0.0


def test_unknown_invalid_rule_names_the_key_and_allowed_values():
    with pytest.raises(ValueError, match=r"task.env.invalid_rule='lenient'.*\['format', 'strict'\]"):
        DeepSearchEnv(invalid_rule="lenient")
    with pytest.raises(ValueError, match="task.env.invalid_action_penalty"):
        DeepSearchEnv(invalid_action_penalty=-0.01)


def test_default_penalty_is_verl_agents_and_never_in_the_reward():
    env = DeepSearchEnv()
    assert env.invalid_action_penalty == 0.01 and env.invalid_rule == "format" and not env.invalid_feedback
    env.reset(options={"index": 0})
    rewards, infos = [], []
    for response in ["no action", "<search>a</search><search>b</search>", "<search>a</search>", "<answer>x</answer>"]:
        _, reward, _, _, info = env.step(response)
        rewards.append(reward)
        infos.append(info)
    assert rewards == [0.0, 0.0, 0.0, 0.0]
    assert [i["penalty"] for i in infos] == [0.01, 0.01, 0.0, 0.0]
    assert all(i["action_valid"] == (i["penalty"] == 0) for i in infos)


def test_task_config_sets_verl_agents_search_settings():
    from omegaconf import OmegaConf
    task = OmegaConf.load("configs/task/deepsearch.yaml").task
    assert task.env.invalid_action_penalty == 0.01 and task.env.invalid_rule == "format"
    assert task.env.invalid_feedback is False and task.env.require_think is False
    assert task.env.max_turns == 4 and task.sampler.prompt_builder.history_length == 4  # the whole episode


# ---------------------------------------------------------------------- observation format
def test_information_block_is_verl_agents_json():
    docs = [{"id": "0", "contents": '"Vardoria"\nVardoria is a country whose capital is Steenhold. '},
            {"id": "1", "contents": '"Steenhold"\nSteenhold lies on the Kelesk.'}]
    assert information(passages_text(docs)) == (
        '<information>{"result": "Doc 1: \\"Vardoria\\"\\nVardoria is a country whose capital is Steenhold.'
        '\\nDoc 2: \\"Steenhold\\"\\nSteenhold lies on the Kelesk.\\n"}</information>')
    assert information(passages_text([])) == '<information>{"result": "No search results found."}</information>'
    assert information("Search error: down") == '<information>{"result": "Search error: down"}</information>'


def test_retriever_failure_is_a_search_error_observation(env, monkeypatch):
    from envs.deepsearch.retriever import RetrievalError

    def unreachable(query, k=None):
        raise RetrievalError("retriever.url='http://127.0.0.1:9/retrieve': no answer after 10 attempts")

    env.reset(options={"index": 0})
    monkeypatch.setattr(env.retriever, "search", unreachable)
    obs, reward, terminated, truncated, info = env.step("<search>Veldoria capital</search>")
    assert result_of(obs) == "Search error: retriever.url='http://127.0.0.1:9/retrieve': no answer after 10 attempts"
    assert info["action_valid"] and reward == 0.0 and not terminated and not truncated


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    env = DeepSearchEnv()
    env.reset(seed=1)
    for _ in range(2):
        obs, reward, terminated, truncated, info = env.step(text)
        assert isinstance(obs, str) and reward in (0.0, 1.0)
        assert isinstance(info["action_valid"], bool) and info["action_valid"] == (info["penalty"] == 0)
        if terminated or truncated:
            break


_FRAGMENTS = ["<search>", "</search>", "<answer>", "</answer>", "<think>", "</think>", "<SEARCH>",
              "</Answer>", "<information>", " ", "\n", "Veldoria", "capital", "\u00e9\u4e2d"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=5), max_size=12).map("".join),
       st.sampled_from(["format", "strict"]))
def test_random_tag_soup_never_raises(text, rule):
    env = DeepSearchEnv(max_turns=2, invalid_rule=rule)
    env.reset(seed=2)
    obs, reward, terminated, truncated, info = env.step(text)
    assert isinstance(obs, str) and info["turn"] == 1 and reward >= 0.0
    projection = project_action(text)
    assert info["action_valid"] == (info["penalty"] == 0.0) and (info["action_valid"] <= projection.well_formed)
    if rule == "format":
        assert info["action"] == projection.action and info["action_valid"] == projection.well_formed
    if not info["action"]:
        assert obs == "" and not terminated


def test_turn_limit_truncates_and_skips_last_search(env):
    env.reset(options={"index": 0})
    for turn in range(1, 5):
        obs, reward, terminated, truncated, info = env.step(f"<search>Veldoria capital {turn}</search>")
        assert info["action_valid"] and reward == 0.0 and not terminated and info["penalty"] == 0.0
        if turn < 4:
            assert not truncated and obs.startswith("<information>")
    assert truncated and obs == ""  # the episode is over: no next observation, the search is not run
    assert info["won"] is False and info["success"] is False
    assert info["metrics"]["num_searches"] == 3.0 and info["metrics"]["answered"] == 0.0
    assert info["metrics"]["inadmissible_actions"] == 1.0 and info["metrics"]["valid_action_ratio"] == 1.0
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


def test_whole_episode_prompt_fits_the_tiny_models_prompt_cap():
    """With ``history_length: 4`` the last turn's prompt shows the whole episode (question, three
    searches and their JSON results: the expert's, then the question's); with the tiny model's
    tokenizer it stays under ``max_prompt_tokens``, so the sampler never cuts it (all 3,390
    questions: mean 517, max 595 of 1,024 tokens)."""
    from omegaconf import OmegaConf

    from src.policy.model import tokenizer_training_text, train_tiny_tokenizer
    from src.rollout.prompts import PromptBuilder

    task = OmegaConf.load("configs/task/deepsearch.yaml").task
    tiny = OmegaConf.load("configs/model/tiny.yaml").policy
    tokenizer = train_tiny_tokenizer(tokenizer_training_text("deepsearch", {"world_seed": 0}), tiny.vocab_size,
                                     list(tiny.extra_tokens))
    builder = PromptBuilder(history_length=task.sampler.prompt_builder.history_length,
                            max_observation_chars=task.sampler.prompt_builder.max_observation_chars)
    env = DeepSearchEnv(split="test", max_turns=task.env.max_turns)
    longest = 0
    for index in range(0, env.num_tasks(), 6):
        obs, info = env.reset(options={"index": index})
        history = []
        for _ in range(3):  # the expert's searches, then the question's: three results in the prompt
            response = env.expert_response()
            if "<search>" not in response:
                response = f"<search>{env._task['question']}</search>"
            next_obs, _, _, _, step = env.step(response)
            history.append((obs, step["action"]))
            obs = next_obs
        assert len(history) == 3 and obs.startswith("<information>") and len(obs) <= builder.max_observation_chars
        prompt = builder.render(tokenizer, info["instruction"], obs, history)
        assert "Observation 1: Question: " in prompt  # the first step is still in the window
        longest = max(longest, len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
    assert 400 < longest <= task.sampler.max_prompt_tokens
