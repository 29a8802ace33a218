"""SQuAD-style answer normalisation, exact match and token F1 (as used by Search-R1 / FlashRAG)."""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Iterable, Union

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")

Golds = Union[str, Iterable[str]]


def normalize_answer(s: str) -> str:
    """Lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    s = str(s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(golden_answers: Golds) -> list:
    if isinstance(golden_answers, str):
        return [golden_answers]
    return [str(g) for g in golden_answers]


def exact_match(prediction: str, golden_answers: Golds) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _golds(golden_answers)))


def _f1(prediction: str, gold: str) -> float:
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    if not pred_toks or not gold_toks:
        return float(pred_toks == gold_toks)
    common = Counter(pred_toks) & Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golden_answers: Golds) -> float:
    """Token-level SQuAD F1 of the prediction, maximised over the gold answers (0.0 if none)."""
    return max((_f1(prediction, g) for g in _golds(golden_answers)), default=0.0)
