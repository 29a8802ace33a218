"""LoRA through peft (model.policy.lora): an update moves only the adapters, the KL reference is the base
with the adapters disabled (no second copy of the weights), checkpoints load with weights_only=True; the
bf16 autocast and gradient-checkpointing switches; a missing peft names the pip command."""
import copy
import importlib.util
import pickle
import sys

import hydra
import pytest
import torch
from lightning import Trainer

from src.data.batch import score_rows
from src.policy.lora import apply_lora, has_lora, reference_model
from src.policy.model import build_tiny_policy
from src.rollout.synthetic import synthetic_rollout

needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None,
                                reason='needs peft: pip install -e ".[lora]"')

LORA = "+model.policy.lora={enabled:true,r:4,alpha:8,dropout:0.0,target_modules:[q_proj,v_proj]}"
#: the tiny model without its warm start: the same cached weights with and without LoRA
NO_WARMSTART = "model.warmstart.enabled=false"
SMALL = dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1)


def _log_probs(model, rows, pad_id):
    return score_rows(model, rows, pad_id).log_probs


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@needs_peft
def test_lora_update_moves_only_the_adapters_against_the_base_as_reference(make_cfg, tmp_path):
    cfg = make_cfg("algo=empg", "algo.filter_groups=false", "algo.kl_coef=0.1", NO_WARMSTART, LORA)
    datamodule = hydra.utils.instantiate(cfg.task)
    module = hydra.utils.instantiate(cfg.model)
    base = hydra.utils.instantiate(make_cfg(NO_WARMSTART).model.policy).model.eval()
    pad_id = module.tokenizer.pad_token_id
    rows = [s.training_row(0.0) for s in synthetic_rollout(1, 2, 2, len(module.tokenizer), seed=1,
                                                           fixed_length=True).steps]
    assert has_lora(module.model) and not has_lora(base)
    module.model.eval()
    with reference_model(module.model, None) as ref:
        assert _log_probs(ref, rows, pad_id) == _log_probs(base, rows, pad_id)
    before = {k: v.detach().clone() for k, v in module.model.named_parameters()}

    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0)
    trainer.fit(module, datamodule)
    assert trainer.global_step == 1 and "train/kl" in trainer.callback_metrics

    changed = {k for k, v in module.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)
    assert any("lora_B" in k for k in changed)  # B starts at zero: the adapters now change the output
    trainable = {k for k, p in module.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)

    # one copy of the base weights: no frozen reference module, the parameters are base + adapters
    assert module.ref_model is None
    n_adapters = sum(p.numel() for k, p in module.model.named_parameters() if "lora_" in k)
    assert _numel(module) == _numel(base) + n_adapters and n_adapters < _numel(base) / 10
    assert not any(k.startswith("ref_model") for k in module.state_dict())
    module.model.eval()
    with reference_model(module.model, module.ref_model) as ref:
        assert _log_probs(ref, rows, pad_id) == _log_probs(base, rows, pad_id)
    assert _log_probs(module.model, rows, pad_id) != _log_probs(base, rows, pad_id)

    path = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    fresh = hydra.utils.instantiate(cfg.model)
    fresh.load_state_dict(state)
    for (k, a), (_, b) in zip(fresh.model.named_parameters(), module.model.named_parameters()):
        assert torch.equal(a, b), k


def test_without_lora_the_reference_is_a_frozen_copy(make_cfg):
    """What LoRA saves: without it, KL keeps a second copy of every weight."""
    module = hydra.utils.instantiate(make_cfg("algo.kl_coef=0.1", NO_WARMSTART).model)
    module.setup("fit")
    assert module.ref_model is not None and _numel(module) == 2 * _numel(module.model)


@needs_peft
def test_kl_in_the_reward_scores_against_the_base_with_adapters_disabled(make_cfg):
    module = hydra.utils.instantiate(make_cfg("algo=reinforce_pp", "algo.kl_coef=0.5", "algo.kl_type=k1",
                                              NO_WARMSTART, LORA).model)
    base = hydra.utils.instantiate(make_cfg(NO_WARMSTART).model.policy).model.eval()
    module.setup("fit")
    assert module.ref_model is None
    # adapters that change the output: a reference with them enabled would not be the base
    with torch.no_grad():
        for name, p in module.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    module.model.eval()
    rollout = synthetic_rollout(1, 2, 2, len(module.tokenizer), seed=1, fixed_length=True)
    batch, _ = module._step_batch(rollout, num_traj=2, horizon=2, max_new_tokens=8)
    rows = [s.training_row(0.0) for s in rollout.steps]
    base_lp = _log_probs(base, rows, module.tokenizer.pad_token_id)
    assert base_lp != _log_probs(module.model, rows, module.tokenizer.pad_token_id)
    for s, ref_lp in zip(rollout.steps, base_lp):
        kl = sum(o - r for o, r in zip(s.old_log_probs, ref_lp))
        assert batch.step_rewards[s.traj_id, s.step_idx].item() == pytest.approx(s.reward - 0.5 * kl, abs=1e-4)


def test_a_missing_peft_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # what an uninstalled package looks like to import
    with pytest.raises(ImportError, match=r'pip install -e "\.\[lora\]"'):
        apply_lora(torch.nn.Linear(2, 2))


def test_bf16_autocast_switch(tmp_path):
    plain = build_tiny_policy(str(tmp_path), **SMALL)
    auto = build_tiny_policy(str(tmp_path), **SMALL, autocast="bf16")
    assert auto.fingerprint != plain.fingerprint  # a warm start under autocast is cached apart
    ids = torch.randint(0, len(plain.tokenizer), (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact, low = plain.model(input_ids=ids).logits, auto.model(input_ids=ids).logits
    assert low.dtype == torch.float32 and not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, atol=0.05, rtol=0.05)
    # the hooks travel with the model: the KL reference's deepcopy and ddp_spawn's pickling
    for clone in (copy.deepcopy(auto.model), pickle.loads(pickle.dumps(auto.model))):
        with torch.no_grad():
            assert torch.equal(clone(input_ids=ids).logits, low)
    with pytest.raises(ValueError, match="allowed values: null, bf16"):
        build_tiny_policy(str(tmp_path), **SMALL, autocast="fp8")


def test_gradient_checkpointing_switch_gives_the_same_gradients(tmp_path):
    grads = []
    for checkpointing in (False, True):
        model = build_tiny_policy(str(tmp_path), **SMALL, gradient_checkpointing=checkpointing).model.train()
        flag = "is_activation_checkpointing" if hasattr(model, "activation_checkpointing_enable") else \
            "is_gradient_checkpointing"
        assert getattr(model, flag) == checkpointing
        ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
        model(input_ids=ids, use_cache=False).logits.logsumexp(-1).sum().backward()
        grads.append({k: p.grad for k, p in model.named_parameters()})
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, msg=k)


def test_autocast_makes_auto_recompute_the_old_log_probs(make_cfg):
    """Under bf16 autocast the sampler's KV-cached log-probs are not the trainer's forward pass: ``auto``
    rescores the rollout, as it does for a bf16 policy; fp32 without autocast keeps the sampler's values."""
    plain = hydra.utils.instantiate(make_cfg(NO_WARMSTART).model)
    auto = hydra.utils.instantiate(make_cfg(NO_WARMSTART, "+model.policy.autocast=bf16").model)
    assert not plain.recomputes_old_log_probs() and auto.recomputes_old_log_probs()
    forced = hydra.utils.instantiate(make_cfg(NO_WARMSTART, "+model.policy.autocast=bf16",
                                              "algo.recompute_old_logprobs=false").model)
    assert not forced.recomputes_old_log_probs()
