"""Training rows -> padded tensors.

Layout (shared by the warm start, the RL loss and the sampler): each row is ``prompt + response``,
left-padded to a common length L, so every response ends at the last column. With R the longest
response in the mini-batch, the logits of the last R+1 positions are all a loss needs
(``logits_to_keep``), and the prompt's logits are never materialised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from src.algos.losses import entropy_from_logits
from src.policy.generation import left_pad, position_ids_from_mask
from src.rollout.sampler import StepRecord


#: Per-row scalars a training row may carry -> their (N,) float tensor in the batch.
ROW_SCALARS = {
    "advantage": "advantages",  # what the loss uses (EMPG-modulated when enabled)
    "base_advantage": "base_advantages",  # the base estimator's, for Proposition 1's diagnostics
    "step_entropy": "step_entropy",  # EMPG's H_t, measured at rollout time
    "old_value": "old_values",  # value head at rollout time (PPO + GAE)
    "value_target": "value_targets",
}


def collate_steps(rows: Sequence[Dict[str, Any]], pad_id: int) -> Dict[str, torch.Tensor]:
    """Collate step rows (dicts with ``prompt_ids`` and ``response_ids`` lists, optional per-token
    ``old_log_probs`` list and the optional scalars of ``ROW_SCALARS``) into:

    * ``input_ids`` (N, L) long, ``attention_mask`` (N, L) long, ``position_ids`` (N, L) long
    * ``targets`` (N, R) long — the response tokens, right-aligned
    * ``response_mask`` (N, R) bool — True on real response tokens
    * ``old_log_probs`` (N, R) float (0 at padding), and each scalar as (N,) float, if present.
    """
    if not rows:
        raise ValueError("collate_steps got an empty list of rows")
    sequences = [list(r["prompt_ids"]) + list(r["response_ids"]) for r in rows]
    input_ids, mask = left_pad(sequences, pad_id)
    width = max(len(r["response_ids"]) for r in rows)
    response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        n = len(r["response_ids"])
        if n:
            response_mask[i, width - n:] = True
    batch = {
        "input_ids": input_ids,
        "attention_mask": mask.long(),
        "position_ids": position_ids_from_mask(mask),
        "targets": input_ids[:, input_ids.shape[1] - width:].clone(),
        "response_mask": response_mask,
    }
    if "old_log_probs" in rows[0]:
        old = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, r in enumerate(rows):
            n = len(r["old_log_probs"])
            if n:
                old[i, width - n:] = torch.as_tensor(r["old_log_probs"], dtype=torch.float32)
        batch["old_log_probs"] = old
    for key, name in ROW_SCALARS.items():
        if key in rows[0]:
            batch[name] = torch.tensor([float(r[key]) for r in rows], dtype=torch.float32)
    return batch


def response_logits(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (N, R, V) float32 that predicted each response token of a collated batch."""
    return response_logits_and_values(model, batch)[0]


def response_logits_and_values(
    model: torch.nn.Module, batch: Dict[str, torch.Tensor], value_head: Optional[torch.nn.Module] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One forward pass: logits (N, R, V) float32 for the response tokens and, with a value head,
    V(s) (N,) float32 read from the last layer's hidden state at each row's last prompt token
    (the state the step's response answered; causal attention keeps it blind to the response)."""
    width = batch["targets"].shape[1]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=width + 1,
        use_cache=False,
        output_hidden_states=value_head is not None,
    )
    logits = out.logits[:, :-1, :].float()
    if value_head is None:
        return logits, None
    hidden = out.hidden_states[-1]
    # rows end at the last column; a response of n tokens starts at column L - n
    n_response = batch["response_mask"].sum(dim=1)
    last_prompt = hidden.shape[1] - n_response - 1
    state = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_prompt]
    return logits, value_head(state.float()).squeeze(-1)


@dataclass
class RowScores:
    """Per-row results of :func:`score_rows`, in the order of the rows given.

    log_probs: per response token, log-probs at the temperature. entropies: per response token, the
    entropy of softmax(logits / temperature) (with ``entropies=True``). values: V(s) per row (with a
    value head)."""

    log_probs: List[List[float]]
    entropies: Optional[List[List[float]]] = None
    values: Optional[List[float]] = None


@torch.no_grad()
def score_rows(
    model: torch.nn.Module,
    rows: Sequence[Dict[str, Any]],
    pad_id: int,
    temperature: float = 1.0,
    batch_size: int = 32,
    value_head: Optional[torch.nn.Module] = None,
    *,
    batches: Optional[Sequence[Sequence[int]]] = None,
    entropies: bool = False,
) -> RowScores:
    """Score each row's response under ``model`` with one forward pass per mini-batch: the reference
    model's log-probs for KL in the reward, PPO's old values, and the recomputed old log-probs and
    step entropies of a rollout (``algo.recompute_old_logprobs``).

    ``batches`` lists the row indices scored together (default: consecutive chunks of ``batch_size``).
    Scoring the rows in the very mini-batches the loss will see makes the recomputed log-probs
    bit-identical to the first update's forward pass: the padded width of a batch changes kernel
    numerics in low precision."""
    if batches is None:
        batches = [range(start, min(start + batch_size, len(rows))) for start in range(0, len(rows), batch_size)]
    device = next(model.parameters()).device
    log_probs: List[List[float]] = [[] for _ in rows]
    token_entropies: Optional[List[List[float]]] = [[] for _ in rows] if entropies else None
    values: Optional[List[float]] = [0.0 for _ in rows] if value_head is not None else None
    for indices in batches:
        indices = list(indices)
        chunk = [rows[i] for i in indices]
        batch = {k: v.to(device) for k, v in collate_steps(chunk, pad_id).items()}
        logits, chunk_values = response_logits_and_values(model, batch, value_head)
        lp = token_log_probs(logits, batch["targets"], temperature).cpu()
        ent = entropy_from_logits(logits / temperature).cpu() if entropies else None
        for j, i in enumerate(indices):
            n = len(rows[i]["response_ids"])
            log_probs[i] = lp[j, lp.shape[1] - n:].tolist() if n else []
            if token_entropies is not None:
                token_entropies[i] = ent[j, ent.shape[1] - n:].tolist() if n else []
        if values is not None:
            for j, i in enumerate(indices):
                values[i] = float(chunk_values[j])
    return RowScores(log_probs=log_probs, entropies=token_entropies, values=values)


def token_log_probs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at ``targets``: (N, R, V), (N, R) -> (N, R)."""
    log_p = torch.log_softmax(logits / temperature, dim=-1)
    return log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def rows_from_pairs(tokenizer, pairs: Sequence[tuple], eos: bool = True) -> List[Dict[str, List[int]]]:
    """(prompt text, response text) pairs -> rows with token ids; the end-of-turn token is appended
    to the response so a warm-started model learns to stop."""
    rows = []
    for prompt, response in pairs:
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if eos:
            response_ids = response_ids + [tokenizer.eos_token_id]
        rows.append({"prompt_ids": tokenizer(prompt, add_special_tokens=False)["input_ids"],
                     "response_ids": response_ids})
    return rows


def rescore_steps(model: torch.nn.Module, steps: Sequence[StepRecord], pad_id: int, temperature: float, *,
                  batches: Optional[Sequence[Sequence[int]]] = None, batch_size: int = 32) -> None:
    """Replace each step's ``old_log_probs`` and ``token_entropies`` with ``model``'s own forward pass (in
    eval mode, at ``temperature``), scored in ``batches`` of step indices (default: chunks of
    ``batch_size``): the trainer's numerics for a rollout (``algo.recompute_old_logprobs``) or the policy's
    scores of responses it did not sample (expert-played steps)."""
    if not steps:
        return
    was_training = model.training
    model.eval()
    scores = score_rows(model, [s.training_row(0.0) for s in steps], pad_id, temperature, batch_size=batch_size,
                        batches=batches, entropies=True)
    model.train(was_training)
    for step, log_probs, entropies in zip(steps, scores.log_probs, scores.entropies):
        step.old_log_probs, step.token_entropies = log_probs, entropies
