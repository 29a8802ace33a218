"""The tiny policy build is deterministic, and the sampler's recorded token log-probs and
entropies equal a fresh forward pass of the same model on the same tokens."""
import filecmp

import hydra
import pytest
import torch

import envs
from src.algos.losses import entropy_from_logits
from src.data.batch import collate_steps, response_logits, token_log_probs
from src.policy.model import build_tiny_policy, stop_token_ids, tokenizer_training_text, train_tiny_tokenizer
from src.models.warmstart import cached_warm_start
from src.rollout.prompts import PromptBuilder
from src.policy.generation import generate
from src.utils.determinism import numerics_signature, pinned_threads

SMALL = dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1, extra_tokens=["<search>", "</search>"])


@pytest.fixture(scope="module")
def policy(make_cfg_module):
    return hydra.utils.instantiate(make_cfg_module().model.policy)


@pytest.fixture(scope="module")
def make_cfg_module(tmp_path_factory, artifact_dir):
    from conftest import FAST_OVERRIDES, compose_cfg

    out = tmp_path_factory.mktemp("out")
    return lambda *o: compose_cfg("train.yaml", FAST_OVERRIDES + list(o), out, artifact_dir)


def test_tiny_build_is_deterministic(tmp_path):
    a = build_tiny_policy(str(tmp_path / "a"), **SMALL)
    b = build_tiny_policy(str(tmp_path / "b"), **SMALL)
    assert a.fingerprint == b.fingerprint
    dir_a, dir_b = tmp_path / "a" / a.fingerprint, tmp_path / "b" / b.fingerprint
    for name in ("tokenizer.json", "config.json"):
        assert filecmp.cmp(dir_a / name, dir_b / name, shallow=False), name
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    # a different seed gives different weights (the check above can fail)
    c = build_tiny_policy(str(tmp_path / "c"), **{**SMALL, "seed": 1})
    assert not torch.equal(c.model.model.layers[0].mlp.up_proj.weight, a.model.model.layers[0].mlp.up_proj.weight)


def test_tiny_tokenizer_has_chat_template_and_single_token_tags(policy):
    tok = policy.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(tok("<search>", add_special_tokens=False)["input_ids"]) == 1
    assert tok.pad_token_id != tok.eos_token_id
    # the tokenizer was trained on the task's text: corpus words are short in tokens
    env = envs.make_env("deepsearch")
    obs, info = env.reset(options={"index": 0})
    assert len(tok(info["instruction"])["input_ids"]) < len(info["instruction"]) / 3


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recorded_log_probs_and_entropies_match_fresh_forward(policy, temperature):
    env = envs.make_env("deepsearch")
    builder = PromptBuilder(history_length=2)
    prompts = []
    for i in range(5):  # prompts of different lengths -> real left padding
        obs, info = env.reset(options={"index": i})
        prompts.append(policy.tokenizer(builder.render(policy.tokenizer, info["instruction"], obs),
                                        add_special_tokens=False)["input_ids"])
    prompts.append(prompts[0][-7:])  # a much shorter prompt
    torch.manual_seed(0)
    responses, log_probs, entropies = generate(policy, prompts, max_new_tokens=12, temperature=temperature)
    assert all(len(r) > 0 for r in responses)
    rows = [{"prompt_ids": p, "response_ids": r, "old_log_probs": lp} for p, r, lp in zip(prompts, responses, log_probs)]
    batch = collate_steps(rows, policy.tokenizer.pad_token_id)
    policy.model.eval()
    with torch.no_grad():
        logits = response_logits(policy.model, batch)
    fresh = token_log_probs(logits, batch["targets"], temperature)
    mask = batch["response_mask"]
    assert torch.allclose(fresh[mask], batch["old_log_probs"][mask], atol=2e-4, rtol=0)
    fresh_entropy = entropy_from_logits(logits / temperature)
    recorded = torch.zeros_like(fresh_entropy)
    for i, ent in enumerate(entropies):
        recorded[i, mask.shape[1] - len(ent):] = torch.tensor(ent)
    assert torch.allclose(fresh_entropy[mask], recorded[mask], atol=2e-4, rtol=0)


def test_greedy_generation_is_deterministic_and_stops_at_eos(policy):
    env = envs.make_env("deepsearch")
    obs, info = env.reset(options={"index": 1})
    ids = policy.tokenizer(PromptBuilder().render(policy.tokenizer, info["instruction"], obs),
                           add_special_tokens=False)["input_ids"]
    a = generate(policy, [ids, ids], max_new_tokens=10, greedy=True)
    b = generate(policy, [ids], max_new_tokens=10, greedy=True)
    assert a[0][0] == a[0][1] == b[0][0]
    stops = {policy.tokenizer.eos_token_id}
    for response in a[0]:
        # a stop token, if any, is the last token
        assert not stops.intersection(response[:-1])


def test_model_hf_loads_a_local_directory_through_the_same_path(tmp_path, make_cfg_module, policy):
    """`model=hf model.name_or_path=<dir>`: any save_pretrained directory (here the tiny policy's)
    loads offline and plays through the same sampler."""
    local = tmp_path / "local_model"
    policy.model.save_pretrained(local)
    policy.tokenizer.save_pretrained(local)
    cfg = make_cfg_module("model=hf", f"model.name_or_path={local}", "model.policy.dtype=float32")
    assert cfg.model.policy.name_or_path == str(local) and not cfg.model.warmstart.enabled
    loaded = hydra.utils.instantiate(cfg.model.policy)
    for (name, a), (_, b) in zip(policy.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), name
    env = envs.make_env("deepsearch")
    obs, info = env.reset(options={"index": 2})
    ids = loaded.tokenizer(PromptBuilder().render(loaded.tokenizer, info["instruction"], obs),
                           add_special_tokens=False)["input_ids"]
    assert generate(loaded, [ids], max_new_tokens=6, greedy=True)[0] == generate(policy, [ids], 6, greedy=True)[0]


def test_every_configured_eos_id_stops_generation(policy):
    # Qwen2.5-Instruct's generation_config lists <|im_end|> and <|endoftext|>; a response ends on either.
    env = envs.make_env("deepsearch")
    obs, info = env.reset(options={"index": 1})
    ids = policy.tokenizer(PromptBuilder().render(policy.tokenizer, info["instruction"], obs),
                           add_special_tokens=False)["input_ids"]
    free = generate(policy, [ids], max_new_tokens=12, greedy=True)[0][0]
    assert len(free) >= 3, "the greedy response is too short to place a stop id inside it"
    second = free[1]  # an ordinary token the greedy response produces at its 2nd position
    assert second not in stop_token_ids(policy.tokenizer)
    original = policy.model.generation_config.eos_token_id
    try:
        policy.model.generation_config.eos_token_id = [policy.tokenizer.eos_token_id, second]
        assert second in stop_token_ids(policy.tokenizer, policy.model.generation_config)
        stopped = generate(policy, [ids], max_new_tokens=12, greedy=True)[0][0]
        # ends at the configured id's first occurrence, which is kept as the last token
        assert stopped == free[:free.index(second) + 1]
    finally:
        policy.model.generation_config.eos_token_id = original


@pytest.mark.parametrize("task", ["deepsearch", "alfworld", "webshop"])
def test_sampler_records_the_row_penalty_apart_from_the_reward(policy, task):
    # an untrained-length policy (8 tokens) writes malformed responses: every such step carries the
    # env's penalty on its own row, and the episode return is the task reward alone
    from src.rollout.sampler import MultiTurnSampler

    env = envs.make_env(task, split="train", max_steps=3) if task != "deepsearch" else envs.make_env(task)
    sampler = MultiTurnSampler(PromptBuilder(), max_new_tokens=8, show_progress=False)
    result = sampler.play(policy, [env], [{"options": {"index": 0}}], [0])
    assert any(not s.action_valid for s in result.steps)
    for step in result.steps:
        assert step.penalty == (0.0 if step.action_valid else pytest.approx(env.invalid_action_penalty))
    episode = result.episodes[0]
    assert episode.episode_return == pytest.approx(sum(s.reward for s in result.steps))
    assert all(s.reward >= 0 for s in result.steps)


# --- reproducibility (docs/reproducibility.md) ---------------------------------------------------

def _tiny_demonstrations(n: int = 24):
    """(prompt, response) pairs with Deep Search's text: long enough prompts that 1 and 2 threads split
    the fine-tune's sums differently."""
    env = envs.make_env("deepsearch")
    pairs = []
    for i in range(n):
        obs, info = env.reset(options={"index": i})
        pairs.append((PromptBuilder().render_text(info["instruction"], obs) * 3, env.expert_response()))
    return pairs


def _fine_tuned_weights(tmp_path, name: str, num_threads, ambient_threads: int):
    """Weights after a 3-step cached warm start of the SMALL policy, run with ``ambient_threads``
    torch threads around it; plus the cache file it wrote."""
    policy = build_tiny_policy(str(tmp_path / "build"), **SMALL)
    with pinned_threads(ambient_threads):
        cached_warm_start(policy, _tiny_demonstrations(), cache_dir=str(tmp_path / name), steps=3, batch_size=8,
                          lr=3e-3, seed=0, num_threads=num_threads)
    [path] = (tmp_path / name).glob("warmstart-*.pt")
    return torch.cat([p.detach().flatten() for p in policy.model.parameters()]), path.name


def test_bpe_tokenizer_is_the_same_with_and_without_parallel_training(monkeypatch):
    # the BPE trainer counts pairs on rayon threads; ties are broken by pair, so the merges are the same
    texts = list(tokenizer_training_text("deepsearch"))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    serial = train_tiny_tokenizer(texts, 600).backend_tokenizer.to_str()
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    assert train_tiny_tokenizer(texts, 600).backend_tokenizer.to_str() == serial


def test_pinned_threads_set_and_restore_the_count():
    before = torch.get_num_threads()
    with pinned_threads(1):
        assert torch.get_num_threads() == 1 and numerics_signature()["threads"] == "1"
    assert torch.get_num_threads() == before
    with pinned_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="num_threads"):
        with pinned_threads(0):
            pass


def test_warm_start_with_pinned_threads_ignores_the_machines_thread_count(tmp_path):
    # one and two threads may give different weights (whether they do on these small sums depends on the CPU and
    # its BLAS: they did on the AVX-512 machine of docs/reproducibility.md, they do not on every machine), so they
    # must not share a cache key; a pinned count gives the same weights, bitwise, under the same key whatever the
    # ambient count
    one, one_key = _fine_tuned_weights(tmp_path, "one", num_threads=None, ambient_threads=1)
    _, two_key = _fine_tuned_weights(tmp_path, "two", num_threads=None, ambient_threads=2)
    assert one_key != two_key
    pinned, pinned_key = _fine_tuned_weights(tmp_path, "pinned", num_threads=1, ambient_threads=2)
    assert torch.equal(pinned, one) and pinned_key == one_key


def test_numerics_signature_names_versions_blas_instruction_set_and_threads():
    signature = numerics_signature()
    assert set(signature) == {"torch", "transformers", "tokenizers", "blas", "cpu_capability", "threads"}
    assert signature["torch"] == torch.__version__ and signature["threads"] == str(torch.get_num_threads())
    assert signature["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_sampled_validation_replays_its_random_stream_and_differs_from_greedy(make_cfg_module, policy):
    # task.val_temperature samples the held-out episodes (verl-agent's 0.4) with draws fixed by (seed, first
    # task index): two validations of the same policy play the same episodes, greedy ones play others
    def responses(*overrides):
        datamodule = hydra.utils.instantiate(make_cfg_module("task=alfworld", "task.val_batch_size=4",
                                                             "task.env.max_steps=3", *overrides).task)
        datamodule.setup()
        result = datamodule.play_validation(policy, [0, 1, 2, 3])
        return [s.response_text for s in result.steps]

    sampled = responses("task.val_temperature=0.4")
    assert sampled == responses("task.val_temperature=0.4")
    assert sampled != responses("task.val_temperature=0.4", "seed=5")
    assert sampled != responses("task.val_temperature=null")


def test_several_validation_samples_replay_the_first_and_draw_anew_after_it(make_cfg_module, policy):
    # task.val_samples=k plays every held-out task k times with k random streams, the first the single-sample
    # validation's: success over k x val_episodes episodes, whose noise shrinks as 1/sqrt(k)
    def datamodule(*overrides):
        module = hydra.utils.instantiate(make_cfg_module("task=alfworld", "task.val_batch_size=3", "task.val_episodes=5",
                                                         "task.env.max_steps=3", "task.val_temperature=0.4",
                                                         *overrides).task)
        module.setup()
        return module

    three = datamodule("task.val_samples=3")
    batches = list(three.val_dataloader())
    expected = [([0, 1, 2], 0), ([3, 4], 0), ([0, 1, 2], 1), ([3, 4], 1), ([0, 1, 2], 2), ([3, 4], 2)]
    assert [(b.task_indices, b.sample) for b in batches] == expected
    assert [(b.task_indices, b.sample) for b in datamodule().val_dataloader()] == [([0, 1, 2], 0), ([3, 4], 0)]

    def responses(module, sample):
        return [s.response_text for s in module.play_validation(policy, [0, 1, 2], sample).steps]

    first = responses(three, 0)
    assert first == responses(datamodule(), 0)  # val_samples=1 runs replay their validations unchanged
    assert responses(three, 1) == responses(three, 1)
    assert responses(three, 1) != first and responses(three, 2) != responses(three, 1)
