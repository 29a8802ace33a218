"""Supervised warm start on expert demonstrations.

A randomly initialised model never writes a well-formed action, so RL would see no signal. A short
supervised fine-tune on the expert's (prompt, response) pairs teaches the format and some of the
skill; it is deliberately short, so the agent starts clearly below the expert and RL has room to
improve. The result is cached by a key of everything it depends on, the arithmetic included: on a
CPU the fine-tune is bitwise reproducible for a fixed thread count, instruction set and library
versions, and differs in the last bits, then more with every step, when any of them changes
(docs/reproducibility.md).
"""
from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from src.data.batch import collate_steps, response_logits, rows_from_pairs, token_log_probs
from src.policy.model import Policy, digest
from src.policy.pretrain import train_steps
from src.utils.determinism import numerics_signature, pinned_threads
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

_FILE_PREFIX, _FILE_SUFFIX = "warmstart-", ".pt"
#: Any warm start's cache file name, as it appears in a run's log (scripts/compare.py records which one
#: a run used, since two runs are paired only on the same file).
WARM_START_FILE = re.compile(re.escape(_FILE_PREFIX) + "[0-9a-f]+" + re.escape(_FILE_SUFFIX))


def warm_start_file(key: str) -> str:
    """The cache file name of the warm start with cache key ``key``."""
    return f"{_FILE_PREFIX}{key}{_FILE_SUFFIX}"


#: Bumped whenever the fine-tune recipe changes, so a stale cached warm start is never reused.
RECIPE_VERSION = 2


@dataclass
class FineTune:
    """A cached fine-tune's cache key and, when it ran in this process, its first and last losses (None: loaded)."""

    key: str
    stats: Optional[Dict[str, float]] = None


def warm_start_key(policy: Policy, pairs: Sequence[Tuple[str, str]], settings: Dict[str, Any]) -> str:
    """Digest of everything the fine-tune depends on: the starting weights, the demonstrations
    themselves (so task settings that do not change them reuse the cache), the settings and the
    current :func:`numerics_signature` (threads, instruction set, BLAS, library versions), so a run
    whose arithmetic differs never reuses, or writes, a result under the same key."""
    return digest([RECIPE_VERSION, policy.fingerprint, list(pairs), settings, numerics_signature()])


def supervised_fine_tune(
    policy: Policy,
    pairs: Sequence[Tuple[str, str]],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    warmup_steps: int = 20,
    seed: int = 0,
    extra_rows: Sequence[Dict[str, List[int]]] = (),
) -> Dict[str, float]:
    """Minimise the response tokens' negative log-likelihood for ``steps`` AdamW steps on random
    mini-batches of ``pairs`` and the token rows ``extra_rows`` (linear warm-up of the learning rate over
    ``warmup_steps``, which keeps the high rate a tiny model needs from blowing up the first updates).
    Returns the first and last mini-batch losses."""
    model, tokenizer = policy.model, policy.tokenizer
    rows = rows_from_pairs(tokenizer, pairs) + list(extra_rows)
    device = next(model.parameters()).device
    rng = random.Random(seed)

    def batch_loss() -> torch.Tensor:
        batch = collate_steps(rng.sample(rows, min(batch_size, len(rows))), tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        log_probs = token_log_probs(response_logits(model, batch), batch["targets"])
        mask = batch["response_mask"]
        return -(log_probs * mask).sum() / mask.sum().clamp(min=1)

    return train_steps(model, batch_loss, steps=steps, lr=lr, warmup_steps=warmup_steps, label="Warm start")


def _save_atomically(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and a rename: an interrupted run never leaves a truncated cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached_warm_start(
    policy: Policy,
    pairs: Sequence[Tuple[str, str]],
    *,
    cache_dir: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    num_threads: Optional[int] = None,
) -> FineTune:
    """Fine-tune ``policy`` on the demonstration ``pairs``, or load the result from
    ``cache_dir/warmstart-<key>.pt`` when the same fine-tune ran before. Returns the cache key and the
    fine-tune's losses when it ran (None on a cache hit).

    ``num_threads`` pins torch's intra-op threads for the fine-tune (None: the current count, which
    is the machine's core count by default); a pinned count takes the core count out of the result,
    the instruction set and the libraries stay in it (and in the key)."""
    with pinned_threads(num_threads):
        key = warm_start_key(policy, pairs, {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed})
        path = Path(cache_dir) / warm_start_file(key)
        if path.exists():
            policy.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log.info(f"Warm start loaded from cache {path}")
            return FineTune(key)
        start = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            stats = supervised_fine_tune(policy, pairs, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        _save_atomically(policy.model.state_dict(), path)
        log.info(f"Warm start: {steps} SFT steps on {len(pairs)} expert steps in {time.perf_counter() - start:.0f}s "
                 f"({numerics_signature()}), loss {stats['first_loss']:.3f} -> {stats['last_loss']:.3f}; cached at {path}")
        return FineTune(key, stats)


def cached_dagger_round(
    policy: Policy,
    previous_key: str,
    pairs: Sequence[Tuple[str, str]],
    labelled: Sequence[Dict[str, List[int]]],
    collect: Callable[[], Tuple[List[Dict[str, List[int]]], float]],
    *,
    settings: Dict[str, Any],
    cache_dir: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    num_threads: Optional[int] = None,
) -> Tuple[FineTune, List[Dict[str, List[int]]]]:
    """One DAgger round on top of the fine-tune ``previous_key`` (the warm start or the previous round):
    ``collect()`` plays the current policy and returns the states it reached, labelled with the expert's
    responses there, as token rows (and the policy's success); the policy is then fine-tuned for ``steps``
    on the expert's demonstrations ``pairs``, every earlier round's ``labelled`` rows and the new ones.
    The policy so learns what to do in the states its own mistakes lead to, which the expert's own
    episodes never visit (a failed command, a receptacle the room lacks).

    Cached in ``cache_dir/dagger-<key>.pt`` with the aggregated rows, under a key chained from
    ``previous_key``, the round's ``settings`` and the numerics, so a cached chain replays without
    playing a single episode. Returns the round's key and losses, and the aggregated labelled rows."""
    with pinned_threads(num_threads):
        key = digest([RECIPE_VERSION, "dagger", previous_key, settings, steps, batch_size, lr, seed,
                      numerics_signature()])
        path = Path(cache_dir) / f"dagger-{key}.pt"
        if path.exists():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            policy.model.load_state_dict(saved["state_dict"])
            log.info(f"DAgger round loaded from cache {path}")
            return FineTune(key), saved["rows"]
        start = time.perf_counter()
        new_rows, success = collect()
        rows = list(labelled) + new_rows
        log.info(f"DAgger: the policy won {success:.3f} of its episodes; {len(new_rows)} states labelled by the "
                 f"expert ({len(rows)} in all) in {time.perf_counter() - start:.0f}s")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            stats = supervised_fine_tune(policy, pairs, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                                         extra_rows=rows)
        _save_atomically({"state_dict": policy.model.state_dict(), "rows": rows}, path)
        log.info(f"DAgger round: {steps} SFT steps in {time.perf_counter() - start:.0f}s, loss "
                 f"{stats['first_loss']:.3f} -> {stats['last_loss']:.3f}; cached at {path}")
        return FineTune(key, stats), rows
