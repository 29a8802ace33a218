"""Training rows -> padded tensors.

Layout (shared by the warm start, the RL loss and the sampler): each row is ``prompt + response``,
left-padded to a common length L, so every response ends at the last column. With R the longest
response in the mini-batch, the logits of the last R+1 positions are all a loss needs
(``logits_to_keep``), and the prompt's logits are never materialised.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from src.rollout.sampler import left_pad, position_ids_from_mask


def collate_steps(rows: Sequence[Dict[str, Any]], pad_id: int) -> Dict[str, torch.Tensor]:
    """Collate step rows (dicts with ``prompt_ids`` and ``response_ids`` lists, optional per-token
    ``old_log_probs`` list and scalar ``advantage``) into:

    * ``input_ids`` (N, L) long, ``attention_mask`` (N, L) long, ``position_ids`` (N, L) long
    * ``targets`` (N, R) long — the response tokens, right-aligned
    * ``response_mask`` (N, R) bool — True on real response tokens
    * ``old_log_probs`` (N, R) float (0 at padding), ``advantages`` (N,) float, if present.
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
    if "advantage" in rows[0]:
        batch["advantages"] = torch.tensor([float(r["advantage"]) for r in rows], dtype=torch.float32)
    return batch


def response_logits(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (N, R, V) float32 that predicted each response token of a collated batch."""
    width = batch["targets"].shape[1]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=width + 1,
        use_cache=False,
    )
    return out.logits[:, :-1, :].float()


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
