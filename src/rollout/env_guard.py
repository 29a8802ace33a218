"""Calls into an environment that may raise or hang, so that a fault ends one episode, not the run.

Environments are often external programs (a game engine, a web shop, a retrieval server): a step can
raise, or never return. :class:`EnvGuard` runs each call on a daemon worker thread and waits at most
``timeout_s``; a call that has not returned by then is abandoned with its worker (a stuck thread cannot be
killed, but a daemon one never keeps the process alive) and later calls go to a fresh worker. The caller
must stop using an environment whose call failed: its state is unknown.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Optional, Tuple


class _Worker:
    def __init__(self) -> None:
        self.requests: "queue.Queue[tuple]" = queue.Queue()
        threading.Thread(target=self._serve, name="env-guard", daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn, args, kwargs, box, done = self.requests.get()
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as error:  # noqa: B902 - any failure of the env is reported to the caller
                box["error"] = error
            done.set()


class EnvGuard:
    """``guard(fn, *args)`` -> ``(value, None)``, or ``(None, message)`` when ``fn`` raised or did not
    return within ``timeout_s`` seconds (None: no time limit, and no thread: the call runs inline)."""

    def __init__(self, timeout_s: Optional[float] = None) -> None:
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"task.env_step_timeout_s must be > 0 or null, got {timeout_s}")
        self.timeout_s = timeout_s
        self._worker: Optional[_Worker] = None

    def __getstate__(self) -> dict:
        # a thread does not pickle (ddp_spawn sends the data module to its workers): each process starts its own
        return {"timeout_s": self.timeout_s, "_worker": None}

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Tuple[Any, Optional[str]]:
        if self.timeout_s is None:
            try:
                return fn(*args, **kwargs), None
            except Exception as error:  # noqa: B902
                return None, _describe(error)
        if self._worker is None:
            self._worker = _Worker()
        box: dict = {}
        done = threading.Event()
        self._worker.requests.put((fn, args, kwargs, box, done))
        if not done.wait(self.timeout_s):
            self._worker = None  # abandoned with the call it is stuck in
            return None, f"no answer within {self.timeout_s:g} s (task.env_step_timeout_s)"
        if "error" in box:
            error = box["error"]
            if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: not the env's fault to hide
                raise error
            return None, _describe(error)
        return box["value"], None


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text[:500]}" if text else type(error).__name__
