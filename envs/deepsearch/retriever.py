"""Sparse BM25 retrieval over a FlashRAG corpus with ``bm25s`` (offline, in-process)."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import bm25s

_MAX_QUERY_CHARS = 1000  # a model may put kilobytes in <search>; BM25 needs only the start


def split_contents(contents: str) -> tuple:
    """``"\\"Title\\"\\ntext"`` -> ``("Title", "text")``."""
    first, _, rest = contents.partition("\n")
    return first.strip().strip('"'), rest.strip()


def format_docs(docs: Sequence[dict]) -> str:
    """Search-R1's layout: ``Doc 1(Title: T) text`` lines, one per document."""
    lines = []
    for i, doc in enumerate(docs, 1):
        title, text = split_contents(doc["contents"])
        lines.append(f"Doc {i}(Title: {title}) {text}")
    return "\n".join(lines)


class BM25Retriever:
    """BM25 index over ``corpus`` (list of ``{"id", "contents"}``); ``search`` gives the top-k dicts.

    Documents that share no term with the query (score 0) are not returned, so a query of only
    stop-words or unknown words yields ``[]``.
    """

    def __init__(self, corpus: List[dict], top_k: int = 3) -> None:
        if not corpus:
            raise ValueError("empty corpus")
        self.corpus = list(corpus)
        self.top_k = int(top_k)
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        tokens = bm25s.tokenize([d["contents"] for d in self.corpus], stopwords="en", show_progress=False)
        self._bm25 = bm25s.BM25()
        self._bm25.index(tokens, show_progress=False)

    def search(self, query: str, k: Optional[int] = None) -> List[dict]:
        return self.search_batch([query], k)[0]

    def search_batch(self, queries: Sequence[str], k: Optional[int] = None) -> List[List[dict]]:
        if not queries:
            return []
        k = min(int(k or self.top_k), len(self.corpus))
        texts = [str(q)[:_MAX_QUERY_CHARS] for q in queries]
        tokens = bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)
        ids, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        out: List[List[dict]] = []
        for row_ids, row_scores in zip(ids, scores):
            out.append([self.corpus[int(i)] for i, s in zip(row_ids, row_scores) if s > 0])
        return out


_CACHE: Dict[tuple, BM25Retriever] = {}


def cached_retriever(key: tuple, corpus: List[dict], top_k: int = 3) -> BM25Retriever:
    """One index per ``key`` (e.g. ``(world_seed, num_entities)``) per process."""
    if key not in _CACHE:
        _CACHE[key] = BM25Retriever(corpus, top_k=top_k)
    return _CACHE[key]
