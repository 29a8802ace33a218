"""``deepsearch``: answer questions about a fictional world by searching a BM25 index.

Protocol (verl-agent's search env, after Search-R1): each response either searches with
``<search>query</search>`` (the top-k passages come back as ``<information>{"result": "Doc 1: ..."}
</information>``) or ends the episode with ``<answer>...</answer>``, scored by normalised exact match
(1.0 / 0.0, the only reward). After ``max_turns`` turns without an answer the episode is truncated;
a search on the last turn is not executed. The response is read as verl-agent's projection reads it
(:func:`project_action`).

Invalid steps (``invalid_rule``): ``"format"`` (default, verl-agent's rule) counts only a format failure
as invalid: no action tag pair, or both tags, or more than one of either (and, with ``require_think``,
no ``<think>...</think>`` before the action). What such a step executes is what verl-agent executes:
the projected action, whatever its validity (the first ``<search>`` block, else the first
``<answer>`` block). With no block at all the action is the empty string: the turn counts, no search
runs and the observation is empty (``invalid_feedback=True`` shows Search-R1-style feedback text
instead); on the last turn the episode ends and is scored (0). ``"strict"`` also counts a well-formed
action the env does not carry out as invalid (an empty query or answer, a search on the last turn),
and an invalid step then executes nothing. Either way the reward carries no penalty: ``info["penalty"]``
(``invalid_action_penalty`` on an invalid step, else 0) is for the trainer to subtract from that
step's own row.

Questions come from the bundled benchmark (:mod:`envs.deepsearch.benchmark`: seven families over a
seeded world) or, with ``data_dir`` (+ ``corpus_path``), from FlashRAG files (:mod:`envs.deepsearch.data`).
"""
from __future__ import annotations

import functools
import json
import random
import re
from typing import Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from bm25s.stopwords import STOPWORDS_EN

from envs.base import StepResult, TextEnv
from envs.deepsearch.benchmark import (FAMILIES, FAMILY_TITLES, IN_DOMAIN, SPLITS, bundled_questions, check_families,
                                       interleave)
from envs.deepsearch.data import load_corpus, load_questions
from envs.deepsearch.retriever import (NO_RESULTS, RetrievalError, RetrieverSpec, cached_retriever, information,
                                       passages_text, retriever_settings)
from envs.deepsearch.scoring import exact_match, f1_score
from envs.deepsearch.world import DEFAULT_NUM_ENTITIES, get_world
from envs.registry import register_env

#: passages of a real corpus used to train the tiny local tokenizer (the rest add little vocabulary)
TOKENIZER_PASSAGES = 20_000

INSTRUCTION = (
    "Answer the question. First reason inside <think> </think>. To look something up, write "
    "<search> query </search> and the results will appear inside <information> </information>. "
    "You can search several times. When you know the answer, give only the short answer inside "
    "<answer> </answer>."
)
#: shown after a response with no action when ``invalid_feedback`` is on (Search-R1 appends such a
#: text; verl-agent shows nothing)
INVALID_FEEDBACK = (
    "Your previous response was invalid. To search, put the query between <search> and </search>. "
    "To give the final answer, put it between <answer> and </answer>."
)
#: ``"format"``: only format failures are invalid (verl-agent); ``"strict"``: also well-formed actions
#: the env does not carry out
INVALID_RULES = ("format", "strict")

# Tags are matched case-insensitively (re.IGNORECASE: also its few non-ASCII case folds, e.g. "ſ" for "s").
_SEARCH_OPEN, _SEARCH_CLOSE = re.compile(r"<search>", re.IGNORECASE), re.compile(r"</search>", re.IGNORECASE)
_ANSWER_OPEN, _ANSWER_CLOSE = re.compile(r"<answer>", re.IGNORECASE), re.compile(r"</answer>", re.IGNORECASE)
_THINK_OPEN, _THINK_CLOSE = re.compile(r"<think>", re.IGNORECASE), re.compile(r"</think>", re.IGNORECASE)


class Projection(NamedTuple):
    """A response read as an action: ``kind`` ``"search"``, ``"answer"`` or ``""`` (no action found),
    ``content`` the stripped text between the tags, ``well_formed`` the projection's validity flag."""

    kind: str
    content: str
    well_formed: bool

    @property
    def action(self) -> str:
        """The action as verl-agent passes it on: ``<search>q</search>``, ``<answer>a</answer>`` or ``""``."""
        return f"<{self.kind}>{self.content}</{self.kind}>" if self.kind else ""


NO_ACTION = Projection("", "", False)


def project_action(response: str, require_think: bool = False) -> Projection:
    """verl-agent's search projection: cut the response after the first ``</search>`` (else after the
    first ``</answer>``; exact lower-case tags, as upstream), then take the first ``<search>...</search>``
    block (tags in any case), else the first ``<answer>...</answer>`` block, else no action.

    Not well-formed: no block; both a ``<search>`` and an ``<answer>`` opening tag anywhere in the
    whole response, or more than one of either; with ``require_think`` (our option; verl-agent does not
    check it for search), no ``<think>...</think>`` before the action's opening tag. An empty block is
    well-formed. The action found is kept even when the response is not well-formed.
    """
    trimmed = _cut_after_first_close(response)
    found = _first_block(trimmed, _SEARCH_OPEN, _SEARCH_CLOSE)
    kind = "search"
    if found is None:
        found, kind = _first_block(trimmed, _ANSWER_OPEN, _ANSWER_CLOSE), "answer"
    if found is None:
        return NO_ACTION
    start, content = found
    searches, answers = len(_SEARCH_OPEN.findall(response)), len(_ANSWER_OPEN.findall(response))
    well_formed = not (searches and answers) and searches <= 1 and answers <= 1
    if require_think and _first_block(response[:start], _THINK_OPEN, _THINK_CLOSE) is None:
        well_formed = False
    return Projection(kind, content.strip(), well_formed)


def _first_block(text: str, opening: "re.Pattern[str]", closing: "re.Pattern[str]") -> Optional[Tuple[int, str]]:
    """``(start, content)`` of the block ``re.search(r"<tag>(.*?)</tag>", re.IGNORECASE | re.DOTALL)`` finds,
    in linear time: the leftmost opening tag followed by a closing tag is the first opening tag (a closing
    tag after a later one follows it too), and its content ends at the first closing tag after it. The
    regex itself restarts its lazy scan at every opening tag, quadratic on e.g. 100 kB of unclosed tags."""
    first = opening.search(text)
    end = closing.search(text, first.end()) if first else None
    return (first.start(), text[first.end():end.start()]) if end else None


def _cut_after_first_close(response: str) -> str:
    """Drop what follows the first ``</search>`` (or, without one, the first ``</answer>``), so that a
    response that goes on after its action (e.g. with an imagined ``<information>``) is read up to it."""
    for close in ("</search>", "</answer>"):
        if close in response:
            return response.split(close, 1)[0] + close
    return response


@register_env("deepsearch")
class DeepSearchEnv(TextEnv):
    """Multi-turn search QA. Questions: the bundled benchmark of world ``(world_seed, num_entities)``,
    or FlashRAG files under ``data_dir`` searched in ``corpus_path``.

    Args:
        split: ``"train"`` or ``"test"``.
        families: datasets of the split (default: train = nq + hotpotqa, test = all seven bundled
            families; with ``data_dir`` any FlashRAG dataset folder names).
        retriever: ``"bm25"`` / ``"dense"`` / ``"remote"`` or a mapping with ``name`` and options
            (``configs/retriever/``).
        max_questions_per_family: keep the first N questions of each family (``None``: all).
        invalid_rule: ``"format"`` (verl-agent: only format failures are invalid) or ``"strict"``
            (well-formed actions the env does not carry out are invalid too and execute nothing); see
            the module docstring.
        invalid_action_penalty: ``info["penalty"]`` of an invalid step (verl-agent's search scripts: 0.01).
        invalid_feedback: after a response with no action, show :data:`INVALID_FEEDBACK` (Search-R1)
            instead of an empty observation (verl-agent).
    """

    def __init__(self, split: str = "train", seed: int = 0, *, world_seed: int = 0,
                 num_entities: int = DEFAULT_NUM_ENTITIES, max_turns: int = 4, top_k: int = 3,
                 invalid_action_penalty: float = 0.01, invalid_rule: str = "format",
                 invalid_feedback: bool = False, require_think: bool = False,
                 retriever: RetrieverSpec = "bm25", families: Optional[Sequence[str]] = None,
                 data_dir: Optional[str] = None, corpus_path: Optional[str] = None,
                 max_questions_per_family: Optional[int] = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        if max_turns < 1:
            raise ValueError("task.env.max_turns must be >= 1")
        if invalid_rule not in INVALID_RULES:
            raise ValueError(f"task.env.invalid_rule={invalid_rule!r}; allowed values: {list(INVALID_RULES)}")
        if invalid_action_penalty < 0:
            raise ValueError(f"task.env.invalid_action_penalty={invalid_action_penalty!r} must be >= 0")
        self.split = split
        families = tuple(families) if families is not None else default_families(split)
        cap = None if max_questions_per_family is None else int(max_questions_per_family)
        settings = retriever_settings(retriever)
        if data_dir is None:
            if corpus_path is not None:
                raise ValueError("task.env.corpus_path is set without task.env.data_dir: a custom corpus needs "
                                 "its own question files (FlashRAG layout <data_dir>/<dataset>/<split>.jsonl)")
            world = get_world(world_seed, num_entities)
            if split == "train" and set(families) - set(IN_DOMAIN):
                raise ValueError(f"task.env.families={list(families)}: the bundled train split holds only "
                                 f"{list(IN_DOMAIN)}; the other families are out-of-domain test sets")
            check_families(families)
            self.tasks = _capped(bundled_questions(world, split, families), cap)
            corpus: Optional[List[dict]] = world.corpus
            corpus_key: tuple = ("world", int(world_seed), int(num_entities))
        else:
            self.tasks = list(_file_questions(str(data_dir), families, split, cap))
            if settings["name"] == "remote":
                corpus, corpus_key = None, ("remote",)  # the server owns the corpus
            elif corpus_path is None:
                raise ValueError("task.env.data_dir needs task.env.corpus_path (a FlashRAG corpus jsonl) for "
                                 f"retriever={settings['name']}, or retriever=remote with a running server")
            else:
                corpus, corpus_key = _file_corpus(str(corpus_path)), ("file", str(corpus_path))
        if not self.tasks:
            raise ValueError(f"no questions for split {split!r} and families {list(families)}")
        self.retriever = cached_retriever(corpus_key, settings, corpus, top_k)
        self.max_turns = int(max_turns)
        self.max_steps = self.max_turns
        self.top_k = int(top_k)
        self.invalid_action_penalty = float(invalid_action_penalty)
        self.invalid_rule = invalid_rule
        self.invalid_feedback = bool(invalid_feedback)
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
        self._inadmissible = 0
        self._history: List[Tuple[Projection, str]] = []  # (action run, observation) per turn: the expert's view
        obs = f"Question: {self._task['question']}"
        info = {
            # the question sits in the instruction too: it must stay in every prompt even after the
            # first observation leaves the sampler's history window
            "instruction": f"{INSTRUCTION}\n{obs}",
            "task_id": self._task["id"],
            "question": self._task["question"],
            "family": self._task["family"],
            "golden_answers": list(self._task["golden_answers"]),
            "anchor_obs": obs,
        }
        return obs, info

    def step(self, response: str) -> StepResult:
        response = self._begin_step(response, started=self._task is not None)
        self.turn += 1
        last_turn = self.turn >= self.max_turns
        projection = project_action(response, self.require_think)
        admitted = self._admits(projection, last_turn)
        self._inadmissible += int(projection.well_formed and not admitted)
        valid = projection.well_formed and (admitted or self.invalid_rule == "format")
        self._invalid += int(not valid)
        # verl-agent sends the projected action to the env whatever its flag; the strict rule runs nothing
        executed = projection if valid or self.invalid_rule == "format" else NO_ACTION

        answer_em = answer_f1 = 0.0
        terminated = executed.kind == "answer"
        if terminated:
            answer_em = exact_match(executed.content, self._task["golden_answers"])
            answer_f1 = f1_score(executed.content, self._task["golden_answers"])
        truncated = last_turn and not terminated
        # a finished episode has no next observation (verl-agent returns none); a search on the last
        # turn is therefore never run
        obs = "" if terminated or truncated else self._observe(executed)
        self._history.append((executed, obs))
        info: Dict[str, Any] = {
            "action": executed.action, "action_valid": valid, "anchor_obs": obs, "turn": self.turn,
            "penalty": 0.0 if valid else self.invalid_action_penalty,
        }
        if terminated or truncated:
            self._done = True
            won = answer_em == 1.0
            info.update(won=won, success=won, metrics={
                "em": answer_em,
                "f1": answer_f1,
                "answered": float(terminated),
                "num_searches": float(self._num_searches),
                "invalid_actions": float(self._invalid),
                "valid_action_ratio": 1.0 - self._invalid / self.turn,
                "inadmissible_actions": float(self._inadmissible),
                # per dataset family: the rollout summary averages a key over the episodes that have it
                f"em_{self._task['family']}": answer_em,
            })
        return obs, answer_em, terminated, truncated, info

    @staticmethod
    def _admits(projection: Projection, last_turn: bool) -> bool:
        """Whether the env carries the action out as written: a non-empty answer, or a non-empty query
        before the last turn (a search on the last turn is not run; an empty query finds nothing)."""
        if projection.kind == "answer":
            return bool(projection.content)
        return projection.kind == "search" and bool(projection.content) and not last_turn

    def _observe(self, action: Projection) -> str:
        """The next observation of an episode that goes on: the search results, or for no action an
        empty string (verl-agent) or :data:`INVALID_FEEDBACK` (Search-R1, with ``invalid_feedback``)."""
        if action.kind != "search":
            return INVALID_FEEDBACK if self.invalid_feedback else ""
        self._num_searches += 1
        try:
            hits = self.retriever.search(action.content, k=self.top_k)
        except RetrievalError as err:
            return information(f"Search error: {err}")
        return information(passages_text(hits))

    # ------------------------------------------------------------------ expert
    def expert_response(self) -> str:
        if self._task is None:
            raise RuntimeError("DeepSearchEnv.expert_response called before reset()")
        return expert_response_for(self._task, self._history, self.max_turns)

    def expert_transcript(self, index: int) -> Iterator[str]:
        """Play question ``index`` with the expert: its observations and responses, in order."""
        obs, _ = self.reset(options={"index": index})
        done = False
        while not done:
            response = self.expert_response()
            yield obs
            yield response
            obs, _, terminated, truncated, _ = self.step(response)
            done = terminated or truncated

    @classmethod
    def tokenizer_corpus(cls, **cfg: Any) -> Iterable[str]:
        max_turns = int(cfg.get("max_turns", 4))
        yield INSTRUCTION
        yield INVALID_FEEDBACK
        yield information(NO_RESULTS)
        if cfg.get("data_dir") is None:
            yield from _bundled_transcripts(cfg, max_turns)
            return
        questions = []
        cap = cfg.get("max_questions_per_family")
        for split in SPLITS:
            families = tuple(cfg.get("families") or default_families(split))
            try:
                questions += _file_questions(str(cfg["data_dir"]), families, split, None if cap is None else int(cap))
            except FileNotFoundError:
                continue  # an evaluation-only set (Bamboogle) has no train file; its test questions still count
        if cfg.get("corpus_path") is not None:
            for doc in load_corpus(str(cfg["corpus_path"]), limit=TOKENIZER_PASSAGES):
                yield doc["contents"]
        for q in questions:
            # without a plan the expert's responses do not depend on what the searches return
            yield f"Question: {q['question']}"
            for turn in range(min(2, max_turns)):
                yield expert_response_for(q, [(NO_ACTION, "")] * turn, max_turns)

    # ------------------------------------------------------------------ results
    @classmethod
    def summary_metrics(cls, metrics: Mapping[str, float]) -> Dict[str, float]:
        """Search-R1's averages over dataset families (macro: each family counts once): in-domain
        (NQ, HotpotQA), out-of-domain (the other five) and all, from the ``task/em_<family>`` means."""
        per_family = _family_em(metrics)
        out: Dict[str, float] = {}
        for name, members in (("in_domain", [f for f in per_family if f in IN_DOMAIN]),
                              ("out_of_domain", [f for f in per_family if f not in IN_DOMAIN]),
                              ("average", list(per_family))):
            if members:
                out[f"task/em_{name}"] = sum(per_family[f] for f in members) / len(members)
        return out

    @classmethod
    def report(cls, metrics: Mapping[str, float]) -> str:
        """EM (%) per dataset family, then the in-domain, out-of-domain and overall averages, in the
        layout of Search-R1's and the EMPG paper's tables († in-domain, * out-of-domain)."""
        per_family = _family_em(metrics)
        if not per_family:
            return ""
        averages = cls.summary_metrics(metrics)
        header, row = [], []
        for family in [f for f in FAMILIES if f in per_family] + [f for f in per_family if f not in FAMILIES]:
            header.append(FAMILY_TITLES.get(family, family) + ("†" if family in IN_DOMAIN else "*"))
            row.append(per_family[family])
        for name, title in (("in_domain", "In-domain"), ("out_of_domain", "Out-of-domain"), ("average", "Avg")):
            if f"task/em_{name}" in averages:
                header.append(title)
                row.append(averages[f"task/em_{name}"])
        cells = [f"{100.0 * v:.1f}" for v in row]
        widths = [max(len(h), len(c)) for h, c in zip(header, cells)]
        return "\n".join([
            "| " + " | ".join(h.rjust(w) for h, w in zip(header, widths)) + " |",
            "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|",
            "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |",
            "Exact match (%) per dataset family; averages are means over families.",
        ])


_SUMMARY_KEYS = ("in_domain", "out_of_domain", "average")


def _family_em(metrics: Mapping[str, float]) -> Dict[str, float]:
    """``{family: EM}`` from ``task/em_<family>`` (or ``em_<family>``) keys, averages excluded."""
    out: Dict[str, float] = {}
    for key, value in metrics.items():
        name = key.removeprefix("task/")
        if name.startswith("em_") and name[3:] not in _SUMMARY_KEYS:
            out[name[3:]] = float(value)
    return out


def default_families(split: str) -> Tuple[str, ...]:
    """Datasets a split holds unless ``families`` says otherwise: train the in-domain two, test all seven."""
    return IN_DOMAIN if split == "train" else FAMILIES


def _capped(rows: List[dict], cap: Optional[int]) -> List[dict]:
    """The first ``cap`` questions of each family, order kept."""
    if cap is None:
        return rows
    counts: Dict[str, int] = {}
    out = []
    for q in rows:
        counts[q["family"]] = counts.get(q["family"], 0) + 1
        if counts[q["family"]] <= cap:
            out.append(q)
    return out


@functools.lru_cache(maxsize=8)
def _file_questions(data_dir: str, families: Tuple[str, ...], split: str, cap: Optional[int]) -> Tuple[dict, ...]:
    """FlashRAG questions, read once per process (the DataModule builds one env per batch slot),
    interleaved by dataset like the bundled test split."""
    rows = load_questions(data_dir, families, split, cap)
    return tuple(interleave([[q for q in rows if q["family"] == f] for f in families]))


@functools.lru_cache(maxsize=2)
def _file_corpus(path: str) -> List[dict]:
    return load_corpus(path)


# ---------------------------------------------------------------------- the expert
# The expert knows what a question asks (its ``plan``, in the question's own terms) and how the bundled
# world's passages state a fact (world.py's sentences); it knows nothing else of the world. Every name
# it searches for or answers is read from the question or from a passage it has retrieved in this
# episode, so the warm start never teaches the policy to produce a name it could not have derived.

class _Relation(NamedTuple):
    """How a passage states a relation (``pattern``'s group: the value) and how the expert says it."""

    pattern: "re.Pattern[str]"
    label: str


_RELATIONS: Dict[str, _Relation] = {rel: _Relation(re.compile(pattern), label) for rel, pattern, label in (
    ("capital", r"The capital of .+? is ([^.]+)\.", "capital"),
    ("currency", r"The currency of .+? is the (\S+) and", "currency"),
    ("language", r"its language is ([^.]+)\.", "language"),
    ("region", r"in the region of ([^.]+)\.", "region"),
    ("country", r"(?:the capital city|a city in the country) of ([^,]+),", "country"),
    ("river", r"on the banks of the river ([^.]+)\.", "river"),
    ("founded", r"was founded in the year (\d+)", "founding year"),
    ("born", r"was born in the city of ([^.]+)\.", "birthplace"),
    ("occupation", r"is an? (.+?) by profession", "profession"),
    ("employer", r"works for the company ([^.]+)\.", "employer"),
    ("industry", r"is a company in the (.+?) industry", "industry"),
    ("founder", r"It was founded by ([^.]+)\.", "founder"),
    ("hq", r"The headquarters of .+? are in the city of ([^.]+)\.", "headquarters"),
    ("author", r"novel written by ([^.]+)\.", "author"),
    ("genre", r"is an? (\S+) novel", "genre"),
    ("published", r"published in the year (\d+)", "publication year"),
)}

#: a retrieved passage inside the ``result`` string: ``Doc i: "Title"\ntext\n``
_DOC = re.compile(r'Doc \d+: "([^"\n]*)"\n([^\n]*)\n')
#: words a clue search leaves out: the retriever's stop-words and the question's wh- and helper words
_NON_CLUES = frozenset(STOPWORDS_EN) | {"which", "what", "who", "where", "when", "do", "does", "did"}


class _Fact(NamedTuple):
    relation: str
    subject: str
    value: str

    def sentence(self) -> str:
        return f"The {_RELATIONS[self.relation].label} of {self.subject} is {self.value}."


class _Step(NamedTuple):
    """The expert's next response: its reason, then a search or an answer."""

    think: str
    kind: str
    content: str

    def response(self) -> str:
        return f"<think>{self.think}</think><{self.kind}>{self.content}</{self.kind}>"


#: what the expert answers when its searches did not give it the facts it needs (or left it no turn)
_UNKNOWN = _Step("The passages do not say.", "answer", "unknown")


def expert_response_for(task: dict, history: Sequence[Tuple[Projection, str]], max_turns: int) -> str:
    """The expert's response after the episode's ``history`` (the action run and the observation it
    got, one pair per turn taken): follow the question's plan, one search per fact it needs, reading
    each fact from the passages retrieved so far; once it has read them all, answer. A search it has
    no turn left to run, or a fact its search did not retrieve, ends the episode with ``unknown``. A
    FlashRAG question has no plan: the expert searches the question, then gives the first golden
    answer (no reader of free text: an upper bound, not a grounded answer)."""
    plan = task.get("plan")
    if plan is None:
        step = (_Step("Search the question.", "search", task["question"]) if not history
                else _Step("The answer is in the passages.", "answer", task["golden_answers"][0]))
    else:
        searched = {action.content for action, _ in history if action.kind == "search"}
        step = _PLANNERS[plan["ask"]](task["question"], plan, searched, _read_passages(obs for _, obs in history))
    if step.kind == "search" and len(history) + 1 >= max_turns:
        step = _UNKNOWN
    return step.response()


def _read_passages(observations: Iterable[str]) -> Dict[str, str]:
    """``{title: text}`` of every passage in the episode's ``<information>`` observations."""
    pages: Dict[str, str] = {}
    for obs in observations:
        if obs.startswith("<information>"):
            result = json.loads(obs[len("<information>"):-len("</information>")])["result"]
            for title, text in _DOC.findall(result):
                pages.setdefault(title, text)
    return pages


def _read(relation: str, text: Optional[str]) -> Optional[str]:
    """The value of ``relation`` as the passage ``text`` states it (``None``: not stated, or no passage)."""
    found = _RELATIONS[relation].pattern.search(text) if text else None
    return found.group(1) if found else None


def _query(subject: str, cue: Optional[str]) -> str:
    """A hop's search: the subject's name as read, and the question's word for the relation."""
    return f"{subject} {cue}" if cue else subject


def _reason(facts: Sequence[_Fact], relation: str, subject: str) -> str:
    """The ``<think>`` of a search: the facts its last search gave, or on the first search what the
    question asks for."""
    return " ".join(f.sentence() for f in facts) or f"I need the {_RELATIONS[relation].label} of {subject}."


def _follow_chain(question: str, plan: dict, searched: set, pages: Dict[str, str]) -> _Step:
    """A chain of relations from the question's subject: each hop's subject is the value read at the
    hop before, searched with the hop's cue (a hop without a cue is read from the previous hop's
    passage, which states it too)."""
    new: List[_Fact] = []  # the facts read since the last search: what the next response builds on
    subject = source = plan["subjects"][0]
    for relation, cue in plan["hops"]:
        if cue is not None:
            if _query(subject, cue) not in searched:
                return _Step(_reason(new, relation, subject), "search", _query(subject, cue))
            source, new = subject, []
        value = _read(relation, pages.get(source))
        if value is None:
            return _UNKNOWN
        new.append(_Fact(relation, subject, value))
        subject = value
    return _Step(" ".join(f.sentence() for f in new), "answer", new[-1].value)


def _compare(question: str, plan: dict, searched: set, pages: Dict[str, str]) -> _Step:
    """Search and read one relation of each subject, then answer the earlier one (``earlier``,
    numeric values) or whether they agree (``same``)."""
    (relation, cue), = plan["hops"]
    facts: List[_Fact] = []
    for subject in plan["subjects"]:
        if _query(subject, cue) not in searched:
            return _Step(_reason(facts, relation, subject), "search", _query(subject, cue))
        value = _read(relation, pages.get(subject))
        if value is None:
            return _UNKNOWN
        facts.append(_Fact(relation, subject, value))
    first, second = facts
    think = f"{first.sentence()[:-1]}, of {second.subject} {second.value}."
    if plan["ask"] == "earlier":
        return _Step(think, "answer", min(facts, key=lambda f: int(f.value)).subject)
    return _Step(think, "answer", "yes" if first.value == second.value else "no")


def _match_clues(question: str, plan: dict, searched: set, pages: Dict[str, str]) -> _Step:
    """Search the question's clue words; answer the title of the passage that states most of them
    (the best-ranked one on a tie)."""
    clues = [w for w in re.findall(r"\w+", question) if w.lower() not in _NON_CLUES]
    if " ".join(clues) not in searched:
        return _Step("I need the one that fits every clue.", "search", " ".join(clues))
    if not pages:
        return _UNKNOWN

    def matched(title: str) -> List[str]:
        words = set(re.findall(r"\w+", pages[title].lower()))
        return [w for w in clues if w.lower() in words]

    title = max(pages, key=lambda t: len(matched(t)))
    return _Step(f"{title} fits {' '.join(matched(title))}.", "answer", title)


_PLANNERS = {"chain": _follow_chain, "earlier": _compare, "same": _compare, "clue": _match_clues}


def _bundled_transcripts(cfg: Mapping[str, Any], max_turns: int) -> Iterator[str]:
    """The world's passages, then the expert's episodes on every bundled question (train and test)
    with the BM25 retriever: each question, the observations it gets and its responses."""
    world_seed, num_entities = int(cfg.get("world_seed", 0)), int(cfg.get("num_entities", DEFAULT_NUM_ENTITIES))
    for doc in get_world(world_seed, num_entities).corpus:
        yield doc["contents"]
    for split in SPLITS:
        env = DeepSearchEnv(split=split, world_seed=world_seed, num_entities=num_entities, max_turns=max_turns,
                            top_k=int(cfg.get("top_k", 3)), families=FAMILIES if split == "test" else IN_DOMAIN)
        for index in range(env.num_tasks()):
            yield from env.expert_transcript(index)
