"""The shop's search engine: BM25 (``bm25s``) over the fields WebShop indexes, top 50.

Upstream indexes, per product, ``Title + Description + BulletPoints[0] + option text`` (option text
``"name: v1, v2, and name2: ..."``), lower-cased, with Lucene's BM25 and English analyzer
(``search_engine/convert_product_file_format.py``). Here the same document text goes to ``bm25s``
with English stop-words and a small plural stemmer (:func:`s_stem`, Harman's "S" stemmer) instead
of Lucene's Porter stemmer. Products that share no term with the query are not returned.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Sequence

import bm25s

SEARCH_RETURN_N = 50
_MAX_QUERY_CHARS = 1000


def s_stem(word: str) -> str:
    """Harman's S stemmer: "ies" -> "y", "es" -> "e" (not after a/e/o), "s" -> "" (not after u/s)."""
    if len(word) > 3 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def _stem_all(words: List[str]) -> List[str]:
    return [s_stem(w) for w in words]


def document_text(product: dict) -> str:
    option_texts = [f"{name}: {', '.join(values)}" for name, values in (product.get("options") or {}).items()]
    bullets = product.get("BulletPoints") or [""]
    return " ".join([product.get("Title", ""), product.get("Description", ""), str(bullets[0]),
                     ", and ".join(option_texts)]).lower()


class SearchEngine:
    """``search(query)`` -> up to 50 ASINs, best first."""

    def __init__(self, products: Sequence[dict]) -> None:
        if not products:
            raise ValueError("empty catalogue")
        self.asins = [p["asin"] for p in products]
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        tokens = bm25s.tokenize([document_text(p) for p in products], stopwords="en", stemmer=_stem_all,
                                show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)
        self._vocab = tokens.vocab

    def search(self, query: str, k: int = SEARCH_RETURN_N) -> List[str]:
        k = min(int(k), len(self.asins))
        text = str(query)[:_MAX_QUERY_CHARS].lower()
        words = bm25s.tokenize([text], stopwords="en", stemmer=_stem_all, return_ids=False,
                               show_progress=False)[0]
        words = [w for w in words if w in self._vocab]
        if not words:
            return []
        ids, scores = self._bm25.retrieve([words], k=k, show_progress=False, n_threads=0)
        return [self.asins[int(i)] for i, s in zip(ids[0], scores[0]) if s > 0]


_CACHE: Dict[tuple, SearchEngine] = {}


def cached_engine(key: tuple, products: Sequence[dict]) -> SearchEngine:
    """One index per catalogue ``key`` per process."""
    if key not in _CACHE:
        _CACHE[key] = SearchEngine(products)
    return _CACHE[key]
