"""The in-process sampler of the ``hf`` rollout backend: batched decoding of one response per prompt with
a KV cache, keeping each token's log-prob and the entropy of the distribution it was drawn from (at the
sampling temperature), so PPO's old log-probs and EMPG's step entropies need no second forward pass.
Also the left-padded layout that the trainer's batches share with it."""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, List, Optional, Sequence, Tuple

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


#: the attention the sampler decodes with on a model that uses ``sdpa``: the same kernel, told that keys and
#: values have fewer heads than queries (``enable_gqa``) instead of being given copies of them
GQA_SDPA = "empg_sdpa_gqa"


def _sdpa_gqa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                        is_causal: Optional[bool] = None, **kwargs: Any) -> Tuple[torch.Tensor, None]:
    """transformers' ``sdpa`` attention without its ``repeat_kv``: with a padding mask it copies every key and
    value ``num_attention_heads / num_key_value_heads`` times at every layer and step (the sampler's batches
    are left-padded, so there always is a mask), which on a CPU costs more than the attention itself."""
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = query.shape[2] > 1 and attention_mask is None and is_causal
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=is_causal,
        enable_gqa=key.shape[1] != query.shape[1])
    return out.transpose(1, 2).contiguous(), None


@contextmanager
def _decoding_attention(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, a model whose attention is ``sdpa`` uses :data:`GQA_SDPA` (registered once with
    transformers' attention and mask interfaces; the masks are sdpa's). Other implementations are left as
    they are, and so is everything outside the block (the trainer's forward passes)."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    if GQA_SDPA not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionInterface.register(GQA_SDPA, _sdpa_gqa_attention)
        AttentionMaskInterface.register(GQA_SDPA, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])
    config._attn_implementation = GQA_SDPA
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


@lru_cache(maxsize=None)
def _exponential_is_log_of_uniform(dtype: torch.dtype) -> bool:
    """Whether, on the CPU, ``Tensor.exponential_(1, generator)`` in ``dtype`` equals ``-log1p(-u)`` of the
    float64 uniforms ``torch.rand`` draws from the same generator, cast to ``dtype``, and leaves the generator
    in the same state (ATen's CPU kernel draws one float64 uniform per element). Checked once per dtype on
    this install, on a draw of 256 x 1,031 numbers, so another torch never gets silently different tokens."""
    shape = (256, 1031)
    seeded = [torch.Generator().manual_seed(12345) for _ in range(2)]
    expected = torch.empty(shape, dtype=dtype).exponential_(1, generator=seeded[0])
    got = torch.log1p(-torch.rand(shape, dtype=torch.float64, generator=seeded[1])).neg_().to(dtype)
    return torch.equal(expected, got) and torch.equal(seeded[0].get_state(), seeded[1].get_state())


def _exponential_rows(shape: Tuple[int, int], dtype: torch.dtype, rows: Optional[torch.Tensor],
                      generator: Optional[torch.Generator], device: torch.device) -> torch.Tensor:
    """``torch.empty(shape, dtype).exponential_(1, generator=generator)[rows]`` (``rows`` None = all). The
    generator advances by the whole ``shape`` either way. On the CPU, when this install's kernel is the
    logarithm of uniforms (:func:`_exponential_is_log_of_uniform`), only the uniforms are drawn for every row
    and the logarithm is taken for ``rows`` alone, in vectorised code: same numbers, a third of the time."""
    if device.type == "cpu" and _exponential_is_log_of_uniform(dtype):
        uniform = torch.rand(shape, dtype=torch.float64, generator=generator)
        if rows is not None:
            uniform = uniform.index_select(0, rows)
        return torch.log1p(-uniform).neg_().to(dtype)
    q = torch.empty(shape, dtype=dtype, device=device).exponential_(1, generator=generator)
    return q if rows is None else q.index_select(0, rows)


def _select_rows(cache: Any, index: torch.Tensor) -> Any:
    """The KV cache with only the batch rows ``index`` (in that order, repeats allowed)."""
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)  # legacy tuple cache


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

    What it returns is what a plain batched decode loop returns (every row decoded every step, each step's
    token drawn by ``torch.multinomial`` over the whole batch from ``generator``; the same tokens for the same
    generator, log-probs and entropies equal up to float rounding), with less work:

    * rows with the same prompt (a group's members on their first turn) share one prefill: each distinct
      prompt is run once and its KV cache copied to the rows that have it;
    * a row that has produced its stop token leaves the batch and the KV cache, so later steps decode only
      the rows still running (the generator still draws the whole batch's random numbers, as that loop does);
    * the attention mask is allocated once for prompt + response, not grown every step;
    * on an ``sdpa`` model, grouped-query attention reads the shared key/value heads in place
      (:func:`_sdpa_gqa_attention`) instead of copying them for every query head.
    """
    if len(prompt_ids) == 0:
        return [], [], []
    with _decoding_attention(policy.model):
        return _decode(policy, prompt_ids, max_new_tokens, temperature, greedy, generator)


def _decode(
    policy: Policy,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float,
    greedy: bool,
    generator: Optional[torch.Generator],
) -> Tuple[List[List[int]], List[List[float]], List[List[float]]]:
    """:func:`generate` on a non-empty batch."""
    model, tokenizer = policy.model, policy.tokenizer
    device = next(model.parameters()).device
    n = len(prompt_ids)
    stops = torch.tensor(stop_token_ids(tokenizer, getattr(model, "generation_config", None)), device=device)
    cache_kw = _cache_keyword(model)

    # one prefill per distinct prompt; ``owner[r]`` = the distinct prompt of row r
    distinct: dict = {}
    owner = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids], device=device)
    unique_ids = list(distinct)
    input_ids, mask = left_pad(unique_ids, tokenizer.pad_token_id, device)
    positions = position_ids_from_mask(mask)
    width = input_ids.shape[1]
    # only the last position's logits are needed: the prompt's (N, L, V) logits would be wasted time and memory
    out = model(input_ids=input_ids, attention_mask=mask.long(), position_ids=positions, use_cache=True,
                logits_to_keep=1)
    logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
    if len(unique_ids) < n:
        past = _select_rows(past, owner)
        logits = logits.index_select(0, owner)
    next_pos = positions[:, -1:].index_select(0, owner) + 1
    attn = torch.ones((n, width + max_new_tokens), dtype=torch.long, device=device)
    attn[:, :width] = mask.index_select(0, owner)

    running = torch.arange(n, device=device)  # the rows still in the batch, in order
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    tokens = torch.full((n, max(max_new_tokens, 0)), tokenizer.pad_token_id, dtype=torch.long, device=device)
    token_lp = torch.zeros((n, max(max_new_tokens, 0)), dtype=torch.float32, device=device)
    token_ent = torch.zeros((n, max(max_new_tokens, 0)), dtype=torch.float32, device=device)
    for step in range(max_new_tokens):
        log_p = torch.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
        probs = log_p.exp()
        entropy = -(probs * log_p).sum(-1)
        if greedy:
            tok = logits.argmax(-1)
        else:
            # torch.multinomial(probs_of_all_n_rows, 1)[running]: ATen's one-sample path draws q ~ Exp(1) for all
            # n rows from the generator and takes argmax(p / q); here the same q, on the running rows
            if not bool(torch.isfinite(probs).all()):  # what torch.multinomial refuses, refused here too
                raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
            q = _exponential_rows((n, probs.shape[-1]), probs.dtype, running if running.numel() < n else None,
                                  generator, device)
            tok = (probs / q).argmax(-1)
        tokens[running, step] = tok
        token_lp[running, step] = log_p.gather(-1, tok[:, None]).squeeze(-1)
        token_ent[running, step] = entropy
        lengths[running] += 1
        stopped = torch.isin(tok, stops)
        if bool(stopped.all()) or step + 1 == max_new_tokens:
            break
        if bool(stopped.any()):  # finished rows leave the batch and the cache
            keep = (~stopped).nonzero().squeeze(-1)
            running, tok, next_pos, attn = running[keep], tok[keep], next_pos[keep], attn[keep]
            past = _select_rows(past, keep)
        out = model(input_ids=tok[:, None], attention_mask=attn[:, : width + step + 1], position_ids=next_pos,
                    use_cache=True, **{cache_kw: past})
        logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
        next_pos = next_pos + 1
    lens = lengths.tolist()
    tok_mat, lp_mat, ent_mat = tokens.tolist(), token_lp.tolist(), token_ent.tolist()
    return ([tok_mat[r][: lens[r]] for r in range(n)], [lp_mat[r][: lens[r]] for r in range(n)],
            [ent_mat[r][: lens[r]] for r in range(n)])
