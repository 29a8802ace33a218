"""The optimised in-process sampler (src/policy/generation.py, issue 14) returns what a plain batched decode
loop returns: one prefill per distinct prompt, finished rows dropped from the batch and the KV cache,
grouped-query attention without copies, and still the same tokens for the same generator (and the
generator left in the same state), log-probs and entropies within 1e-5, greedy and sampled."""
import copy
from typing import List, Sequence

import pytest
import torch

from envs import make_env
from src.policy.generation import (_cache_keyword, _exponential_is_log_of_uniform, _exponential_rows, _returned_cache,
                                   generate, left_pad, position_ids_from_mask)
from src.policy.model import build_tiny_policy, stop_token_ids
from src.rollout.prompts import PromptBuilder
from src.rollout.sampler import MultiTurnSampler, concat_rollouts

SMALL = dict(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1)
TOLERANCE = 1e-5


@torch.no_grad()
def reference_generate(policy, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 1.0,
                       *, greedy: bool = False, generator=None):
    """The plain loop: every row prefilled on its own and decoded at every step until all have stopped,
    finished rows fed padding; the token drawn by ``torch.multinomial`` over the whole batch."""
    model, tokenizer = policy.model, policy.tokenizer
    n = len(prompt_ids)
    stops = torch.tensor(stop_token_ids(tokenizer, model.generation_config))
    input_ids, mask = left_pad(prompt_ids, tokenizer.pad_token_id)
    positions = position_ids_from_mask(mask)
    out = model(input_ids=input_ids, attention_mask=mask.long(), position_ids=positions, use_cache=True)
    logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
    next_pos, attn = positions[:, -1:] + 1, mask.long()
    finished = torch.zeros(n, dtype=torch.bool)
    lengths = torch.zeros(n, dtype=torch.long)
    tokens, token_lp, token_ent = [], [], []
    for _ in range(max_new_tokens):
        log_p = torch.log_softmax(logits / temperature, dim=-1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        tok = logits.argmax(-1) if greedy else torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(-1)
        tok = torch.where(finished, torch.full_like(tok, tokenizer.pad_token_id), tok)
        tokens.append(tok)
        token_lp.append(log_p.gather(-1, tok[:, None]).squeeze(-1))
        token_ent.append(entropy)
        lengths += (~finished).long()
        finished |= torch.isin(tok, stops)
        if bool(finished.all()):
            break
        attn = torch.cat([attn, torch.ones((n, 1), dtype=attn.dtype)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos, use_cache=True,
                    **{_cache_keyword(model): past})
        logits, past = out.logits[:, -1, :].float(), _returned_cache(out)
        next_pos = next_pos + 1
    tok_m, lp_m, ent_m = (torch.stack(x, 1).tolist() for x in (tokens, token_lp, token_ent))
    lens = lengths.tolist()
    return ([tok_m[r][: lens[r]] for r in range(n)], [lp_m[r][: lens[r]] for r in range(n)],
            [ent_m[r][: lens[r]] for r in range(n)])


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    policy = build_tiny_policy(str(tmp_path_factory.mktemp("tiny")), **SMALL)
    policy.model.eval()
    return policy


def prompts_with_groups() -> List[List[int]]:
    """Two groups of identical first prompts (3 and 2 members, interleaved with others) and three
    prompts of other lengths: the rows differ in length, some share a prompt."""
    a, b = list(range(20, 37)), list(range(100, 105))
    return [a, list(range(40, 49)), b, a, list(range(60, 90)), b, a, [7, 8, 9]]


def with_stops(policy, stops: Sequence[int]):
    """The policy's model ending responses on ``stops`` too (rows then stop at different steps)."""
    policy.model.generation_config.eos_token_id = sorted(set(stops) | {policy.tokenizer.eos_token_id})
    return policy


def assert_same(fast, reference):
    tokens, log_probs, entropies = fast
    ref_tokens, ref_log_probs, ref_entropies = reference
    assert tokens == ref_tokens
    for got, want in ((log_probs, ref_log_probs), (entropies, ref_entropies)):
        assert [len(r) for r in got] == [len(r) for r in want]
        gap = max((abs(x - y) for rg, rw in zip(got, want) for x, y in zip(rg, rw)), default=0.0)
        assert gap <= TOLERANCE, gap


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampled_decoding_equals_the_plain_loop(policy, seed, temperature):
    # about one token in 25 ends a response: rows stop at different steps, some run to the cap
    with_stops(policy, range(3, 600, 25))
    prompts = prompts_with_groups()
    g_fast, g_ref = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    fast = generate(policy, prompts, 24, temperature, generator=g_fast)
    reference = reference_generate(policy, prompts, 24, temperature, generator=g_ref)
    assert_same(fast, reference)
    lengths = {len(t) for t in fast[0]}
    assert len(lengths) >= 3, lengths  # the rows really stopped at different steps
    # the generator is left where the plain loop leaves it: the next turn of a rollout draws the same
    assert torch.equal(g_fast.get_state(), g_ref.get_state())


def test_greedy_decoding_equals_the_plain_loop(policy):
    # the random tiny model (tied embeddings) greedily repeats its last token; an untied random head
    # makes greedy paths that differ from step to step
    policy = copy.copy(policy)
    policy.model = copy.deepcopy(policy.model)
    head = torch.randn(policy.model.lm_head.weight.shape, generator=torch.Generator().manual_seed(0))
    policy.model.lm_head.weight = torch.nn.Parameter(head)
    with_stops(policy, [])
    prompts = prompts_with_groups()
    free = reference_generate(policy, prompts, 12, greedy=True)[0]
    # stop on tokens the rows would write at different steps, so they end at different lengths
    stops = {row[k] for row, k in zip(free, [2, 5, 8, 11, 3, 6, 9, 1]) if len(row) > k}
    with_stops(policy, stops)
    fast = generate(policy, prompts, 12, greedy=True)
    assert_same(fast, reference_generate(policy, prompts, 12, greedy=True))
    assert len({len(t) for t in fast[0]}) >= 2


def test_one_prefill_per_distinct_prompt_and_finished_rows_leave_the_batch(policy):
    with_stops(policy, range(3, 600, 25))
    batch_sizes: List[int] = []
    hook = policy.model.model.embed_tokens.register_forward_hook(
        lambda module, args, output: batch_sizes.append(args[0].shape[0]))
    try:
        tokens = generate(policy, prompts_with_groups(), 24, generator=torch.Generator().manual_seed(0))[0]
    finally:
        hook.remove()
    assert batch_sizes[0] == 5  # 8 rows, 5 distinct prompts
    # every decode step runs only the rows that had not stopped before it
    running = [sum(len(t) > step for t in tokens) for step in range(1, max(len(t) for t in tokens))]
    assert batch_sizes[1:] == running
    assert batch_sizes[-1] < 8
    # grouped-query attention without copied key/value heads, only inside the sampler
    assert policy.model.config._attn_implementation == "sdpa"


def test_edge_cases(policy):
    with_stops(policy, [])
    assert generate(policy, [], 8) == ([], [], [])
    one = generate(policy, [[5, 6, 7]], 6, generator=torch.Generator().manual_seed(0))
    assert_same(one, reference_generate(policy, [[5, 6, 7]], 6, generator=torch.Generator().manual_seed(0)))
    assert len(one[0][0]) == 6  # no stop token: the cap
    broken = copy.copy(policy)
    broken.model = copy.deepcopy(policy.model)
    with torch.no_grad():
        broken.model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(RuntimeError, match="nan"):  # as torch.multinomial refuses NaN probabilities
        generate(broken, [[5, 6, 7]], 4, generator=torch.Generator().manual_seed(0))
    same = [[5, 6, 7]] * 4  # a whole group: one prefill for all
    assert_same(generate(policy, same, 6, generator=torch.Generator().manual_seed(1)),
                reference_generate(policy, same, 6, generator=torch.Generator().manual_seed(1)))


def test_a_rollout_splits_its_time_between_generation_and_environments(policy):
    """The epoch time split's sources (time/generation_s, time/env_s): each play's seconds in the backend and
    in the environments, summed over the plays that make one rollout."""
    with_stops(policy, [])
    sampler = MultiTurnSampler(PromptBuilder(), max_new_tokens=6, show_progress=False)
    envs = [make_env("deepsearch", split="train", seed=i) for i in range(2)]
    result = sampler.play(policy, envs, [{"options": {"index": 0}}] * 2, [0, 0],
                          generator=torch.Generator().manual_seed(0))
    assert result.generation_seconds > 0 and result.env_seconds > 0
    assert result.generation_seconds + result.env_seconds <= result.seconds
    again = sampler.play(policy, envs, [{"options": {"index": 1}}] * 2, [0, 0],
                         generator=torch.Generator().manual_seed(0))
    both = concat_rollouts([result, again])
    assert both.generation_seconds == pytest.approx(result.generation_seconds + again.generation_seconds)
    assert both.env_seconds == pytest.approx(result.env_seconds + again.env_seconds)


@pytest.mark.parametrize("rows", [None, [0, 2, 5]])
def test_the_random_numbers_are_the_ones_multinomial_draws(rows):
    """The sampler's Exp(1) draw (uniforms for every row, the logarithm for the running ones) is
    ``exponential_``'s, bitwise, and leaves the generator where ``exponential_`` leaves it."""
    assert _exponential_is_log_of_uniform(torch.float32)  # this install takes the fast path
    g_want, g_got = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    want = torch.empty(7, 333).exponential_(1, generator=g_want)
    index = None if rows is None else torch.tensor(rows)
    got = _exponential_rows((7, 333), torch.float32, index, g_got, torch.device("cpu"))
    assert torch.equal(got, want if index is None else want[index])
    assert torch.equal(g_got.get_state(), g_want.get_state())
