"""The in-process sampler of the ``hf`` rollout backend: batched decoding of one response per prompt with
a KV cache, keeping each token's log-prob and the entropy of the distribution it was drawn from (at the
sampling temperature), so PPO's old log-probs and EMPG's step entropies need no second forward pass.
Also the left-padded layout that the trainer's batches share with it."""
from __future__ import annotations

import inspect
from typing import Any, List, Optional, Sequence, Tuple

import torch

from src.policy.model import Policy, stop_token_ids


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to (N, L) ``input_ids`` and a bool ``attention_mask``."""
    width = max((len(s) for s in sequences), default=0)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool, device=device)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq):] = torch.as_tensor(list(seq), dtype=torch.long, device=device)
            mask[row, width - len(seq):] = True
    return ids, mask


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token (left padding is skipped)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _cache_keyword(model: torch.nn.Module) -> str:
    """transformers 5.x renamed the KV-cache argument ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _returned_cache(output: Any) -> Any:
    cache = output.get("cache") if hasattr(output, "get") else None
    return cache if cache is not None else output.past_key_values


@torch.no_grad()
def generate(
    policy: Policy,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 1.0,
    *,
    greedy: bool = False,
    generator: Optional[torch.Generator] = None,
) -> Tuple[List[List[int]], List[List[float]], List[List[float]]]:
    """Sample one response per prompt with a KV cache.

    Returns per row: response token ids (the stop token included when one was produced),
    their log-probs and the entropy of each token's sampling distribution, both under
    ``softmax(logits / temperature)``. Greedy decoding records the same quantities.
    """
    model, tokenizer = policy.model, policy.tokenizer
    device = next(model.parameters()).device
    n = len(prompt_ids)
    if n == 0:
        return [], [], []
    stops = torch.tensor(stop_token_ids(tokenizer, getattr(model, "generation_config", None)), device=device)
    input_ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id, device)
    positions = position_ids_from_mask(mask)
    cache_kw = _cache_keyword(model)
    # only the last position's logits are needed: the prompt's (N, L, V) logits would be wasted time and memory
    out = model(input_ids=input_ids, attention_mask=mask.long(), position_ids=positions, use_cache=True,
                logits_to_keep=1)
    logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
    next_pos = positions[:, -1:] + 1
    attn = mask.long()
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    tokens, token_lp, token_ent = [], [], []
    for _ in range(max_new_tokens):
        log_p = torch.log_softmax(logits / temperature, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        if greedy:
            tok = logits.argmax(-1)
        else:
            tok = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(-1)
        tok = torch.where(finished, torch.full_like(tok, tokenizer.pad_token_id), tok)
        tokens.append(tok)
        token_lp.append(log_p.gather(-1, tok[:, None]).squeeze(-1))
        token_ent.append(entropy)
        lengths += (~finished).long()
        finished |= torch.isin(tok, stops)
        if bool(finished.all()):
            break
        attn = torch.cat([attn, torch.ones((n, 1), dtype=attn.dtype, device=device)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
                    **{cache_kw: past})
        logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
        next_pos = next_pos + 1
    tok_mat = torch.stack(tokens, 1).tolist()
    lp_mat = torch.stack(token_lp, 1).tolist()
    ent_mat = torch.stack(token_ent, 1).tolist()
    lens = lengths.tolist()
    return ([tok_mat[r][: lens[r]] for r in range(n)], [lp_mat[r][: lens[r]] for r in range(n)],
            [ent_mat[r][: lens[r]] for r in range(n)])
