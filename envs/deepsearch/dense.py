"""Dense retrieval for Deep Search (``retriever=dense``): e5-style embeddings + a FAISS inner-product index.

As in Search-R1 (``intfloat/e5-base-v2``): queries are encoded as ``"query: " + text`` and passages as
``"passage: " + contents``, mean-pooled and L2-normalised, so the inner product of a ``faiss.IndexFlatIP``
is the cosine similarity. The corpus embeddings are computed once and cached on disk (``index_dir``),
keyed by a digest of the model, the prefixes and the corpus. Needs the ``.[dense]`` extra.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from envs.deepsearch.retriever import MAX_QUERY_CHARS, Retriever

INSTALL_HINT = 'pip install -e ".[dense]"'


def _import_dense_packages() -> Tuple[Any, Any]:
    """``(sentence_transformers, faiss)``, or an ImportError that says how to install them."""
    try:
        import faiss
        import sentence_transformers
    except ImportError as err:
        raise ImportError(f"retriever=dense needs sentence-transformers and faiss ({err}); install them with "
                          f"{INSTALL_HINT}") from err
    return sentence_transformers, faiss


def _looks_like_path(model_path: str) -> bool:
    """A filesystem path rather than a hub id (``name`` or ``org/name``): absolute, ``.``/``~``, or 2+ slashes."""
    return os.path.isabs(model_path) or model_path.startswith((".", "~")) or model_path.count("/") > 1


def resolve_model_path(model_path: str) -> str:
    """An existing local directory as its absolute real path, a hub id unchanged; a missing path is an error."""
    local = os.path.expanduser(model_path)
    if os.path.isdir(local):
        return os.path.realpath(local)
    if _looks_like_path(model_path):
        raise FileNotFoundError(f"retriever.model_path={model_path!r} does not exist; point it at a local "
                                f"sentence-transformers model directory or use a hub id such as intfloat/e5-base-v2")
    return model_path


def index_digest(model_id: str, query_prefix: str, passage_prefix: str, corpus: Sequence[dict]) -> str:
    """Hex digest naming a cached index: changes with the model, either prefix, or any corpus id / contents."""
    h = hashlib.sha256()
    h.update(json.dumps([model_id, query_prefix, passage_prefix]).encode())
    for row in corpus:
        # length-prefixed fields, so ("ab", "c") and ("a", "bc") hash differently
        for field in (str(row["id"]), row["contents"]):
            data = field.encode()
            h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:32]


class DenseRetriever(Retriever):
    """Top-k cosine search of e5-style embeddings over ``corpus`` (list of ``{"id", "contents"}`` rows).

    ``model_path`` is a hub id or a local sentence-transformers directory (offline: a local copy of
    ``intfloat/e5-base-v2``). The corpus index is built on the first search; with ``index_dir`` it is
    saved there (``index_path``) and later retrievers over the same model, prefixes and corpus load it
    instead of re-encoding the corpus.
    """

    def __init__(self, corpus: List[dict], top_k: int = 3, model_path: str = "intfloat/e5-base-v2",
                 index_dir: Optional[str] = None, query_prefix: str = "query: ", passage_prefix: str = "passage: ",
                 batch_size: int = 64, device: Optional[str] = None) -> None:
        if not corpus:
            raise ValueError("empty corpus")
        sentence_transformers, self._faiss = _import_dense_packages()
        self.corpus = list(corpus)
        self.top_k = int(top_k)
        self.model_id = resolve_model_path(str(model_path))
        self.index_dir = os.path.expanduser(str(index_dir)) if index_dir else None
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.batch_size = int(batch_size)
        self.index_path = None if self.index_dir is None else os.path.join(
            self.index_dir, f"dense-{index_digest(self.model_id, query_prefix, passage_prefix, self.corpus)}.faiss")
        try:
            self.model = sentence_transformers.SentenceTransformer(self.model_id, device=device)
        except (OSError, ValueError) as err:  # a hub id not cached and no network, or a directory that is no model
            raise OSError(f"retriever.model_path={model_path!r} could not be loaded ({err}); point it at a "
                          f"sentence-transformers model directory (offline: a local copy of intfloat/e5-base-v2)") from err
        self._index = None
        self._index_lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit-norm embeddings of ``texts`` (prefixes already applied)."""
        emb = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(emb, dtype=np.float32)

    def _build_index(self):
        emb = self.encode([self.passage_prefix + row["contents"] for row in self.corpus])
        index = self._faiss.IndexFlatIP(emb.shape[1])
        index.add(emb)
        return index

    def _load_or_build_index(self):
        if self.index_path is not None and os.path.exists(self.index_path):
            return self._faiss.read_index(self.index_path)
        index = self._build_index()
        if self.index_path is not None:
            os.makedirs(self.index_dir, exist_ok=True)
            # write then rename: a concurrent reader (another rank) never sees a half-written file
            tmp = f"{self.index_path}.{os.getpid()}.tmp"
            self._faiss.write_index(index, tmp)
            os.replace(tmp, self.index_path)
        return index

    @property
    def index(self):
        """The ``faiss.IndexFlatIP`` over the corpus embeddings (row i = ``corpus[i]``), loaded or built once."""
        with self._index_lock:
            if self._index is None:
                self._index = self._load_or_build_index()
            return self._index

    def search_batch_with_scores(self, queries: Sequence[str],
                                 k: Optional[int] = None) -> List[List[Tuple[dict, float]]]:
        """Per query, up to ``k`` ``(corpus row, cosine similarity)`` pairs, best first."""
        if not queries:
            return []
        index = self.index
        k = min(int(k or self.top_k), index.ntotal)
        emb = self.encode([self.query_prefix + str(q)[:MAX_QUERY_CHARS] for q in queries])
        scores, ids = index.search(emb, k)
        return [[(self.corpus[int(i)], float(s)) for i, s in zip(row_ids, row_scores) if i >= 0]
                for row_ids, row_scores in zip(ids, scores)]


def build_local_encoder(directory: str, texts: Sequence[str], hidden_size: int = 32, num_layers: int = 2,
                        seed: int = 0) -> str:
    """Save a tiny random-init BERT sentence-transformers model (mean pooling) to ``directory``; return it.

    Built offline and deterministically from ``texts`` (its WordPiece vocabulary: their words and
    characters) and ``seed`` (the weights). For tests and benchmarks only: its embeddings are random projections,
    not meaningful similarities; it exercises the dense pipeline's plumbing and measures its speed.
    """
    import torch
    from tokenizers import normalizers, pre_tokenizers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    with warnings.catch_warnings():
        # sentence_transformers >= 5 moved these modules; the old path keeps >= 3.0 working
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers import SentenceTransformer, models

    os.makedirs(directory, exist_ok=True)
    # The vocabulary: every word and character of ``texts`` as split by BERT's own normaliser and
    # pre-tokenizer. (tokenizers' WordPieceTrainer breaks ties between equally frequent merges in
    # hash-map order, so its vocabulary changes from run to run; this one does not.)
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    chars = {c for w in words for c in w}
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab_file = os.path.join(directory, "vocab.txt")
    with open(vocab_file, "w", encoding="utf-8") as f:
        f.write("\n".join(specials + sorted(words | chars | {"##" + c for c in chars})) + "\n")
    tokenizer = BertTokenizerFast(vocab_file, do_lower_case=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=max(1, hidden_size // 16), intermediate_size=4 * hidden_size,
                        max_position_embeddings=512)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
        torch.manual_seed(seed)
        bert = BertModel(config)
    bert.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    transformer = models.Transformer(directory, max_seq_length=256)
    pooling = models.Pooling(hidden_size, pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(directory)
    return directory
