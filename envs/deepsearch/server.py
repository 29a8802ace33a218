"""A retrieval server (Search-R1's ``POST /retrieve`` protocol) and its client, ``RemoteRetriever``.

One process holds the index (a big BM25 or dense index is built once, not once per training
process); training reaches it with ``retriever=remote retriever.url=http://HOST:PORT/retrieve``.

    python -m envs.deepsearch.server --retriever bm25|dense [--corpus_path corpus.jsonl]
        [--model_path intfloat/e5-base-v2 --index_dir DIR] [--topk 3] [--host 127.0.0.1] [--port 8000]
        [--max_concurrent 16] [--max_body_bytes 1048576] [--max_topk 100] [--max_queries 4096] [--timeout_s 30]

The server takes either request form (Search-R1's client sends the batched one, verl-agent's the
single one; each project's own server takes only its own form, so ``RemoteRetriever(request_form=...)``
picks the one to send)::

    {"queries": ["q1", "q2"], "topk": 3, "return_scores": true}
    {"query": "q1", "topk": 3, "return_scores": true}

Answer: ``{"result": [[{"document": {"id", "contents"}, "score": s}, ...], ...]}``, one inner list per
query, best first; without ``return_scores`` the inner lists hold the documents themselves.

Limits (``serve`` arguments, the CLI flags above): the server listens on the loopback interface unless
told otherwise; at most ``max_concurrent`` requests are handled at once, and further connections wait in
the listen queue (``LISTEN_BACKLOG``) until one finishes; a connection silent for ``timeout_s`` is
dropped (a stalled body gets 408), so a client that sends nothing holds a slot that long at most (the
timeout is per read: a client that trickles bytes is not cut off). A refused request gets a 4xx with
``{"error": message}``: 400 for malformed JSON, wrong types, an empty query or an empty list, ``topk``
outside ``[1, max_topk]`` or more than ``max_queries`` queries; 411 without ``Content-Length``; 413 for
a body over ``max_body_bytes``; 404 for any other path.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence, Tuple

from envs.deepsearch.data import load_corpus
from envs.deepsearch.retriever import MAX_QUERY_CHARS, Hits, RetrievalError, Retriever, make_retriever
from envs.deepsearch.world import get_world

log = logging.getLogger(__name__)

START_HINT = "start one with `python -m envs.deepsearch.server --port PORT` (see its --help)"

#: request bodies the client can send: Search-R1's batched ``{"queries": [...]}`` or verl-agent's ``{"query": q}``
REQUEST_FORMS = ("queries", "query")


#: requests handled at once (``max_concurrent``): searches take turns on the index anyway, so more
#: slots only overlap reading requests and writing answers
MAX_CONCURRENT = 16
#: request body limit (``max_body_bytes``): a batch of 1,000 queries of 1,000 characters fits
MAX_BODY_BYTES = 1 << 20
#: largest ``topk`` a request may ask for (``max_topk``)
MAX_TOPK = 100
#: most queries in one request (``max_queries``); benchmarks/retrieval.py sends 1,000
MAX_QUERIES = 4096
#: seconds a connection may stay silent while the server reads its request or writes its answer
REQUEST_TIMEOUT_S = 30.0
#: connections the OS queues while every slot is busy (``socketserver``'s default of 5 makes the 6th
#: waiting client's connection attempt time out and retry a second later)
LISTEN_BACKLOG = 128
#: bytes of an oversized body read and dropped before the 413, so that the client is not still sending
#: when the connection closes (it would see a reset instead of the answer)
DRAIN_BYTES = 256 * 1024


class BadRequest(ValueError):
    """A request the server refuses: answered with ``status`` (400 unless said) and ``{"error": message}``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_request(body: bytes) -> Tuple[List[str], Optional[int], bool]:
    """``(queries, topk or None, return_scores)`` from a request body, or :class:`BadRequest` naming
    the field at fault. The server's own limits (``max_topk``, ``max_queries``) are checked after."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadRequest(f"malformed JSON: {err}") from err
    except RecursionError as err:  # e.g. a megabyte of "[": the decoder recurses once per level
        raise BadRequest("malformed JSON: nested too deeply") from err
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    if "queries" in payload:
        queries, field = payload["queries"], "queries"
    elif "query" in payload:
        queries, field = [payload["query"]], "query"
    else:
        raise BadRequest('missing "queries" (a list of strings) or "query" (a string)')
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadRequest('"queries" must be a list of strings and "query" a string')
    if not queries:
        raise BadRequest('"queries" is an empty list: send at least one query')
    for i, query in enumerate(queries):
        if not query.strip():
            raise BadRequest(f'"{field}" is empty' if field == "query" else f'"queries"[{i}] is empty')
    topk = payload.get("topk")
    if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
        raise BadRequest(f'"topk" must be a positive integer, got {topk!r}')
    return_scores = payload.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise BadRequest(f'"return_scores" must be true or false, got {return_scores!r}')
    return queries, topk, return_scores


class RetrievalServer(ThreadingHTTPServer):
    """HTTP server over one retriever: one thread per request, at most ``max_concurrent`` at once (the
    accept loop waits for a free slot, the connections behind wait in the listen queue); request
    threads take turns on the index (``lock``). The limits are described in the module docstring."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, retriever: Retriever, host: str, port: int, *, max_concurrent: int = MAX_CONCURRENT,
                 max_body_bytes: int = MAX_BODY_BYTES, max_topk: int = MAX_TOPK, max_queries: int = MAX_QUERIES,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        for name, value in (("max_concurrent", max_concurrent), ("max_body_bytes", max_body_bytes),
                            ("max_topk", max_topk), ("max_queries", max_queries), ("timeout_s", timeout_s)):
            if not value > 0:
                raise ValueError(f"{name}={value!r} must be > 0")
        self.retriever = retriever
        self.lock = threading.Lock()
        self.max_body_bytes, self.max_topk, self.max_queries = int(max_body_bytes), int(max_topk), int(max_queries)
        self.timeout_s = float(timeout_s)
        self._slots = threading.BoundedSemaphore(int(max_concurrent))
        super().__init__((host, port), RetrieveHandler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        self._slots.acquire()  # released by the request's thread when it ends
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: nobody else will release the slot
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def answer(self, queries: List[str], topk: Optional[int], return_scores: bool) -> Dict[str, Any]:
        """The ``{"result": ...}`` answer to one parsed request, or :class:`BadRequest` over a limit."""
        if len(queries) > self.max_queries:
            raise BadRequest(f"{len(queries)} queries in one request; this server takes at most {self.max_queries} "
                             f"(--max_queries)")
        if topk is not None and topk > self.max_topk:
            raise BadRequest(f'"topk" must be in [1, {self.max_topk}] (this server\'s --max_topk), got {topk}')
        with self.lock:
            hits = self.retriever.search_batch_with_scores(queries, topk)
        if return_scores:
            return {"result": [[{"document": row, "score": score} for row, score in per_query] for per_query in hits]}
        return {"result": [[row for row, _ in per_query] for per_query in hits]}


class RetrieveHandler(BaseHTTPRequestHandler):
    """``POST /retrieve``; a 4xx for a refused request (see the module docstring), 500 if the search fails.

    One request per connection (HTTP/1.0), so a slot is held for one request only."""

    server: RetrievalServer

    def setup(self) -> None:
        self.timeout = self.server.timeout_s  # StreamRequestHandler puts it on the socket: every read and write
        super().setup()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") != "/retrieve":
            self._send(404, {"error": f"unknown path {self.path!r}; POST to /retrieve"})
            return
        try:
            self._send(200, self.server.answer(*parse_request(self._read_body())))
        except BadRequest as err:
            self._send(err.status, {"error": str(err)})
        except TimeoutError:
            self._send(408, {"error": f"the request body did not arrive within {self.server.timeout_s:g} s"})
        except Exception as err:  # report it to the client (which retries 5xx) rather than drop the connection
            log.exception("retrieval failed")
            self._send(500, {"error": f"{type(err).__name__}: {err}"})

    def do_GET(self) -> None:  # noqa: N802
        self._send(404, {"error": "POST to /retrieve"})

    def _read_body(self) -> bytes:
        """The request body, read only when ``Content-Length`` is given and within ``max_body_bytes``."""
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise BadRequest("missing Content-Length: send the JSON body with its length", status=411)
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            raise BadRequest(f"Content-Length {declared!r} is not a byte count")
        limit = self.server.max_body_bytes
        if length > limit:
            self.rfile.read(min(length, DRAIN_BYTES))
            raise BadRequest(f"the request body has {length} bytes, over this server's limit of {limit} "
                             f"(--max_body_bytes); send fewer queries per request", status=413)
        body = self.rfile.read(length)
        if len(body) < length:
            raise BadRequest(f"the request body ended after {len(body)} of its {length} bytes")
        return body

    def _send(self, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client left without its answer: nobody to tell
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise during training
        log.debug(format, *args)


def serve(retriever: Retriever, host: str = "127.0.0.1", port: int = 8000, **limits: Any) -> RetrievalServer:
    """A server bound to ``host:port`` (port 0: any free port, see ``server_address``), not yet serving;
    ``limits``: :class:`RetrievalServer`'s ``max_concurrent``, ``max_body_bytes``, ``max_topk``,
    ``max_queries``, ``timeout_s``.

    Call ``serve_forever()`` on it (the CLI does; tests run it in a thread) and ``shutdown()`` to stop
    (it returns once the accept loop is free: while every slot is busy, after at most ``timeout_s``).
    """
    return RetrievalServer(retriever, host, port, **limits)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class RemoteRetriever(Retriever):
    """Client of a retrieval server (``POST url`` in the Search-R1 protocol, see the module docstring).

    ``corpus`` is ignored: the server owns the corpus and the index. ``request_form="queries"`` sends
    all queries of a :meth:`search_batch` in one ``{"queries": [...], "topk": k, "return_scores": true}``
    request (Search-R1's server takes only this form); ``request_form="query"`` sends one
    ``{"query": q, "topk": k, "return_scores": true}`` request per query (verl-agent's server takes only
    this one). The bundled server takes both. Connection errors, timeouts and 5xx answers are retried,
    ``retries`` attempts in all, waiting ``backoff_s * attempt`` between them; then
    :class:`RetrievalError`. A 4xx answer or an answer of the wrong shape raises ``RuntimeError`` at
    once (the URL or the server is wrong; asking again will not help).
    """

    def __init__(self, corpus: Optional[List[dict]] = None, top_k: int = 3,
                 url: str = "http://127.0.0.1:8000/retrieve", timeout_s: float = 60.0, retries: int = 10,
                 backoff_s: float = 1.0, request_form: str = "queries") -> None:
        if not str(url).startswith(("http://", "https://")):
            raise ValueError(f"retriever.url={url!r} is not an http(s) URL; set it to the server's "
                             f"http://HOST:PORT/retrieve")
        if int(retries) < 1:
            raise ValueError(f"retriever.retries={retries!r} must be >= 1 (attempts in all)")
        if request_form not in REQUEST_FORMS:
            raise ValueError(f"retriever.request_form={request_form!r} is not a request form; allowed values: "
                             f"{list(REQUEST_FORMS)} (queries: Search-R1's batched server, query: verl-agent's "
                             f"single-query server; the bundled server takes both)")
        self.top_k = int(top_k)
        self.url = str(url)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.request_form = request_form

    def _post(self, payload: Dict[str, Any]) -> Any:
        """The server's JSON answer to ``payload``, retrying connection errors and 5xx."""
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        last_error = ""
        for attempt in range(1, self.retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return self._decode(response.read())
            except urllib.error.HTTPError as err:
                detail = _error_message(err.read())
                if err.code < 500:  # our request is wrong; asking again will not help
                    raise RuntimeError(f"retriever.url={self.url!r} rejected the request (HTTP {err.code}): "
                                       f"{detail}") from err
                last_error = f"HTTP {err.code}: {detail}"
            except (urllib.error.URLError, OSError) as err:  # refused, reset, timed out
                last_error = f"{type(err).__name__}: {err}"
            if attempt < self.retries:
                log.warning("retrieval server %s: %s (attempt %d/%d)", self.url, last_error, attempt, self.retries)
                time.sleep(self.backoff_s * attempt)
        raise RetrievalError(f"retriever.url={self.url!r}: no answer after {self.retries} attempts ({last_error}); "
                             f"is the retrieval server running? {START_HINT}, or set retriever.url to its address")

    def _decode(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError as err:
            raise RuntimeError(f"retriever.url={self.url!r} answered with something other than JSON: "
                               f"{body[:200]!r}") from err

    def _hits(self, payload: Dict[str, Any], n_queries: int) -> Hits:
        answer = self._post(payload)
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, list) or len(result) != n_queries:
            raise RuntimeError(f"retriever.url={self.url!r} answered without a 'result' list of {n_queries} "
                               f"entries; is it a Search-R1-style /retrieve endpoint?")
        # {"document": row, "score": s} items, or bare rows from a server that ignores return_scores
        hits = [[(item.get("document", item), float(item.get("score", "nan"))) for item in per_query]
                for per_query in result]
        if any("contents" not in doc for per_query in hits for doc, _ in per_query):
            raise RuntimeError(f"retriever.url={self.url!r} returned documents without 'contents'")
        return hits

    def search_batch_with_scores(self, queries: Sequence[str], k: Optional[int] = None) -> Hits:
        """Per query, the server's hits. An empty (or blank) query is not sent, since the bundled server
        refuses it (400): it finds nothing, as the in-process BM25 retriever finds nothing for it."""
        topk = int(k or self.top_k)
        texts = [str(q)[:MAX_QUERY_CHARS] for q in queries]
        asked = [i for i, text in enumerate(texts) if text.strip()]
        hits: Hits = [[] for _ in texts]
        if self.request_form == "queries" and asked:
            answers = self._hits({"queries": [texts[i] for i in asked], "topk": topk, "return_scores": True},
                                 len(asked))
        else:
            answers = [self._hits({"query": texts[i], "topk": topk, "return_scores": True}, 1)[0] for i in asked]
        for i, answer in zip(asked, answers):
            hits[i] = answer
        return hits


def _error_message(body: bytes) -> str:
    """The ``error`` of a server's ``{"error": message}`` answer, else the answer's text."""
    text = body.decode(errors="replace")
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    return str(payload["error"]) if isinstance(payload, dict) and "error" in payload else text


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Serve POST /retrieve (Search-R1 protocol) over one corpus.")
    parser.add_argument("--retriever", choices=["bm25", "dense"], default="bm25")
    parser.add_argument("--corpus_path", default=None,
                        help="FlashRAG .jsonl corpus; default: the bundled deep-search world's corpus (seed 0)")
    parser.add_argument("--model_path", default=None, help="dense: hub id or local model directory")
    parser.add_argument("--index_dir", default=None, help="dense: where to cache the corpus index")
    parser.add_argument("--topk", type=int, default=3, help="results per query when a request gives no topk")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on; the default is reachable from this machine only")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_concurrent", type=int, default=MAX_CONCURRENT,
                        help="requests handled at once; more connections wait in the listen queue")
    parser.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES, help="larger bodies get 413")
    parser.add_argument("--max_topk", type=int, default=MAX_TOPK, help="a larger topk gets 400")
    parser.add_argument("--max_queries", type=int, default=MAX_QUERIES, help="more queries per request get 400")
    parser.add_argument("--timeout_s", type=float, default=REQUEST_TIMEOUT_S,
                        help="a connection silent this long while sending its request is dropped")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    corpus = load_corpus(args.corpus_path) if args.corpus_path else get_world(0).corpus
    start = time.perf_counter()
    options = {k: v for k, v in (("model_path", args.model_path), ("index_dir", args.index_dir)) if v}
    if args.retriever == "bm25" and options:
        parser.error("--model_path and --index_dir are options of --retriever dense")
    retriever = make_retriever({"name": args.retriever, **options}, corpus, args.topk)
    if args.retriever == "dense":
        retriever.index  # build or load the index now, not on the first request
    server = serve(retriever, args.host, args.port, max_concurrent=args.max_concurrent,
                   max_body_bytes=args.max_body_bytes, max_topk=args.max_topk, max_queries=args.max_queries,
                   timeout_s=args.timeout_s)
    if not is_loopback(args.host):
        log.warning("listening on %s: other machines can query the index (the server has no authentication)",
                    args.host)
    host, port = server.server_address[:2]
    log.info("%s over %d passages ready in %.1f s: POST http://%s:%d/retrieve", args.retriever, len(corpus),
             time.perf_counter() - start, host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
