"""Copy pre-training of the tiny model: the skill every task needs and a from-scratch model lacks.

An agent has to copy names out of its prompt: an answer out of a retrieved passage (Deep Search), the
instruction's words into a query and a product id off the results page (WebShop), a receptacle out of
the admissible list (ALFWorld). A pretrained LLM brings that skill (induction heads) from pre-training;
the tiny model, trained from scratch on a few thousand demonstrations, learns the demonstrations'
answers instead (docs/tuning.md: 22 of 32 in-domain Deep Search misses retrieved the answer and named
another entity). This stage gives it the skill on the task's own text before the warm start, with no
task knowledge: each row is a text from the tokenizer's corpus, then a cue (a few of its tokens
starting at a random place), and the target is what follows the cue in the text.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Dict, List, Sequence

import torch

from src.policy.generation import left_pad, position_ids_from_mask
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

#: tokens of a text shown per row (longer texts are cut at a random place)
MAX_TEXT_TOKENS = 256
#: cue and copied span lengths, in tokens
CUE_TOKENS = (2, 4)
SPAN_TOKENS = (2, 16)


def copy_rows(tokenized: Sequence[Sequence[int]], separator: Sequence[int], num_rows: int,
              seed: int = 0) -> List[Dict[str, List[int]]]:
    """``num_rows`` rows ``{prompt_ids: text + separator + cue, response_ids: continuation}`` drawn from
    the token sequences ``tokenized`` (those long enough for a cue and one token to copy).

    The cue is the first ``CUE_TOKENS`` tokens of a random span of the text and the response the next
    ``SPAN_TOKENS`` tokens, so answering means finding the cue in the text and copying what follows it
    (the cue's first occurrence in the text is the one whose continuation is the target, so every row
    has one answer)."""
    rng = random.Random(seed)
    texts = [list(t) for t in tokenized if len(t) >= CUE_TOKENS[0] + 1]
    if not texts:
        raise ValueError("copy_rows: no text is long enough to copy from")
    rows = []
    for _ in range(num_rows):
        text = rng.choice(texts)
        if len(text) > MAX_TEXT_TOKENS:
            start = rng.randrange(len(text) - MAX_TEXT_TOKENS + 1)
            text = text[start:start + MAX_TEXT_TOKENS]
        cue = min(rng.randint(*CUE_TOKENS), len(text) - 1)
        span = rng.randint(*SPAN_TOKENS)
        at = rng.randrange(len(text) - cue)
        at = _first_occurrence(text, text[at:at + cue])
        rows.append({"prompt_ids": text + list(separator) + text[at:at + cue],
                     "response_ids": text[at + cue:at + cue + span]})
    return rows


def _first_occurrence(text: Sequence[int], cue: Sequence[int]) -> int:
    n = len(cue)
    return next(i for i in range(len(text) - n + 1) if list(text[i:i + n]) == list(cue))


def train_steps(model, batch_loss: Callable[[], torch.Tensor], *, steps: int, lr: float, warmup_steps: int = 20,
                label: str = "Training", log_every: int = 100) -> Dict[str, float]:
    """``steps`` AdamW steps (no weight decay; learning rate warmed up linearly over ``warmup_steps``; gradient
    norm clipped at 1) on the loss ``batch_loss()`` returns, a fresh mini-batch per call; logs the mean loss
    every ``log_every`` steps. The loop of the copy pre-training and of the warm start. Returns the first and
    last mini-batch losses."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(warmup_steps, 1)))
    model.train()
    losses: List[float] = []
    start = time.perf_counter()
    for step in range(steps):
        loss = batch_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0 and step + 1 < steps:  # long CPU runs show progress
            log.info(f"{label}: step {step + 1}/{steps}, loss {sum(losses[-log_every:]) / log_every:.3f}, "
                     f"{time.perf_counter() - start:.0f}s")
    return {"first_loss": losses[0] if losses else float("nan"), "last_loss": losses[-1] if losses else float("nan")}


def train_on_rows(model, rows: Sequence[Dict[str, List[int]]], pad_id: int, *, steps: int, batch_size: int = 16,
                  lr: float = 3e-3, seed: int = 0) -> Dict[str, float]:
    """Minimise the ``response_ids`` tokens' negative log-likelihood after their ``prompt_ids`` on random
    mini-batches of ``rows``, left-padded as the warm start's batches are (:func:`train_steps`)."""
    rng = random.Random(seed)
    rows = list(rows)

    def batch_loss() -> torch.Tensor:
        batch = rng.sample(rows, min(batch_size, len(rows)))
        ids, mask = left_pad([list(r["prompt_ids"]) + list(r["response_ids"]) for r in batch], pad_id)
        # the same layout with every prompt token ignored: only the continuation is scored
        labels, _ = left_pad([[-100] * len(r["prompt_ids"]) + list(r["response_ids"]) for r in batch], -100)
        return model(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids_from_mask(mask),
                     labels=labels).loss  # labels shift inside the model

    return train_steps(model, batch_loss, steps=steps, lr=lr, label="Copy pre-training")
