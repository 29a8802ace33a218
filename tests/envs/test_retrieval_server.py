"""The retrieval server (envs/deepsearch/server.py) under load and bad requests: concurrent clients get
the in-process retriever's answers while at most ``max_concurrent`` requests are handled at once; every
bad request gets a 4xx with a message; a client that sends nothing holds a slot for ``timeout_s`` at
most; the server answers correctly afterwards."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from envs.deepsearch.retriever import BM25Retriever, split_contents
from envs.deepsearch.server import RemoteRetriever, RetrieveHandler, is_loopback, serve
from envs.deepsearch.world import get_world

CORPUS = get_world(0).corpus
#: passage titles, each found by BM25 (the answers compared below are not empty lists)
QUERIES = [split_contents(doc["contents"])[0] for doc in CORPUS[:96]]
LIMITS = dict(max_concurrent=4, max_body_bytes=64 * 1024, max_topk=20, max_queries=64, timeout_s=0.5)
CLIENTS, REQUESTS_PER_CLIENT = 24, 4


class SlowBM25(BM25Retriever):
    """BM25 that takes a few milliseconds per search, so that requests overlap in the server."""

    def search_batch_with_scores(self, queries, k=None):
        time.sleep(0.003)
        return super().search_batch_with_scores(queries, k)


@pytest.fixture(scope="module")
def local():
    return BM25Retriever(CORPUS, top_k=3)


@pytest.fixture
def served():
    """``(url, port)`` of a server with small limits (``LIMITS``) over the world's corpus, in a thread."""
    server = serve(SlowBM25(CORPUS, top_k=3), "127.0.0.1", 0, **LIMITS)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    yield f"http://127.0.0.1:{port}/retrieve", port
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def post(url: str, body: bytes, method: str = "POST"):
    """``(status, JSON answer)`` of a request to ``url``."""
    request = urllib.request.Request(url, data=body if method == "POST" else None, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def raw_exchange(port: int, data: bytes, timeout_s: float = 10.0):
    """Send ``data`` on a new connection and read until the server closes it: ``(status, JSON answer)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def assert_same_hits(remote_hits, local_hits):
    assert [[row for row, _ in q] for q in remote_hits] == [[row for row, _ in q] for q in local_hits]
    np.testing.assert_allclose([s for q in remote_hits for _, s in q], [s for q in local_hits for _, s in q])


def test_concurrent_clients_get_the_in_process_answers_within_the_bound(served, local, monkeypatch):
    url, _ = served
    lock, active, peak = threading.Lock(), [0], [0]
    handle = RetrieveHandler.handle

    def counted(self):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            handle(self)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(RetrieveHandler, "handle", counted)

    def client(index: int):
        # half the clients send Search-R1's batched form, half verl-agent's single form; one attempt
        # each: a connection over the bound must wait for its turn, not fail and be retried
        remote = RemoteRetriever(url=url, top_k=3, retries=1, timeout_s=10,
                                 request_form="queries" if index % 2 else "query")
        out = []
        for r in range(REQUESTS_PER_CLIENT):
            start = (index * REQUESTS_PER_CLIENT + r) % len(QUERIES)
            queries = QUERIES[start:start + 1 + r % 3]
            out.append((queries, remote.search_batch_with_scores(queries)))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [pair for result in pool.map(client, range(CLIENTS)) for pair in result]
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    for queries, hits in answers:
        expected = local.search_batch_with_scores(queries)
        assert all(expected) and len(hits) == len(queries)
        assert_same_hits(hits, expected)
    assert peak[0] == LIMITS["max_concurrent"]  # the bound was reached and never passed


OVER = json.dumps({"queries": ["x" * (LIMITS["max_body_bytes"] + 1)]}).encode()


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "malformed JSON"),
    (b"\xff\xfe\x00garbage", 400, "malformed JSON"),
    (b"[" * 50_000, 400, "nested too deeply"),
    (b'["a list"]', 400, "JSON object"),
    (b'{"queries": 5}', 400, '"queries" must be a list of strings'),
    (b'{"query": ["x"]}', 400, '"query" a string'),
    (b'{"query": "capital", "topk": "x"}', 400, '"topk" must be a positive integer'),
    (b'{"query": "capital", "topk": 1000000000}', 400, '"topk" must be in [1, 20]'),
    (b'{"query": "capital", "return_scores": "yes"}', 400, '"return_scores" must be true or false'),
    (b'{"query": ""}', 400, '"query" is empty'),
    (b'{"queries": ["capital", "  "]}', 400, '"queries"[1] is empty'),
    (b'{"queries": []}', 400, '"queries" is an empty list'),
    (json.dumps({"queries": ["q"] * 65}).encode(), 400, "at most 64"),
    (OVER, 413, f"over this server's limit of {LIMITS['max_body_bytes']}"),
])
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_goes_on(served, local, body, status, message):
    url, _ = served
    answer_status, answer = post(url, body)
    assert answer_status == status and message in answer["error"], answer
    answer_status, answer = post(url, json.dumps({"query": QUERIES[0], "topk": 3}).encode())
    assert answer_status == 200 and answer["result"] == [local.search(QUERIES[0], k=3)]


def test_other_paths_and_methods_get_404(served):
    url, _ = served
    assert post(url.replace("/retrieve", "/search"), b'{"query": "x"}')[0] == 404
    status, answer = post(url, b"", method="GET")
    assert status == 404 and "POST to /retrieve" in answer["error"]


@pytest.mark.parametrize("head, status, message", [
    (b"POST /retrieve HTTP/1.1\r\nHost: x\r\n\r\n", 411, "missing Content-Length"),
    (b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "not a byte count"),
    (b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: many\r\n\r\n", 400, "not a byte count"),
    # 10 of 100 bytes, then silence: dropped with 408 after timeout_s, not waited for forever
    (b"POST /retrieve HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"query\":", 408, "did not arrive"),
])
def test_broken_framing_gets_a_4xx(served, head, status, message):
    _, port = served
    answer_status, answer = raw_exchange(port, head)
    assert answer_status == status and message in answer["error"]


def test_silent_clients_hold_a_slot_for_timeout_s_at_most(served, local):
    url, port = served
    # as many silent connections as slots: the next request waits for their timeout, then is answered
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(LIMITS["max_concurrent"])]
    try:
        start = time.perf_counter()
        status, answer = post(url, json.dumps({"query": QUERIES[1], "topk": 2}).encode())
        waited = time.perf_counter() - start
        assert status == 200 and answer["result"] == [local.search(QUERIES[1], k=2)]
        assert waited >= 0.9 * LIMITS["timeout_s"]  # it did wait for a slot...
        for sock in silent:
            assert sock.recv(1) == b""  # ...which the server freed by closing the silent connection
    finally:
        for sock in silent:
            sock.close()
    status, _ = post(url, json.dumps({"query": QUERIES[2]}).encode())
    assert status == 200


def test_the_client_reports_the_servers_message_and_does_not_send_empty_queries(served, local):
    url, _ = served
    remote = RemoteRetriever(url=url, retries=3)
    with pytest.raises(RuntimeError, match=r"HTTP 400\): \"topk\" must be in \[1, 20\]"):
        remote.search("capital", k=10**9)
    # a blank query finds nothing without a request (the server would refuse it), as BM25 in-process
    hits = remote.search_batch_with_scores(["", QUERIES[3], "   "])
    assert_same_hits(hits, local.search_batch_with_scores(["", QUERIES[3], "   "]))
    assert hits[0] == hits[2] == [] and hits[1]
    assert RemoteRetriever(url=url, request_form="query").search_batch(["", QUERIES[3]]) == \
        local.search_batch(["", QUERIES[3]])


def test_server_binds_loopback_by_default_and_checks_its_limits():
    server = serve(BM25Retriever(CORPUS[:4]), port=0)
    try:
        assert is_loopback(server.server_address[0])
    finally:
        server.server_close()
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")
    for name in LIMITS:
        with pytest.raises(ValueError, match=name):
            serve(BM25Retriever(CORPUS[:4]), port=0, **{name: 0})
