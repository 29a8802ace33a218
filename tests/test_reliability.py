"""Issue 15: one bad episode or one bad number does not end or poison a run. An environment that raises or
hangs ends only its episode; too many such episodes stop the run after a checkpoint; a non-finite
advantage, loss or gradient skips its update and never reaches the weights."""
import math
import time

import pytest
import torch
from lightning import Callback

from src.data.rollout_datamodule import EnvironmentFailure, RolloutDataModule
from src.models.agent_module import AgentLitModule
from src.rollout.env_guard import EnvGuard
from src.train import train


# ---------------------------------------------------------------------- the guard itself
def test_env_guard_returns_values_errors_and_timeouts():
    guard = EnvGuard(timeout_s=0.2)
    assert guard(lambda x: x + 1, 1) == (2, None)
    value, error = guard(lambda: 1 / 0)
    assert value is None and error.startswith("ZeroDivisionError")
    start = time.perf_counter()
    value, error = guard(time.sleep, 5)
    assert value is None and "no answer within 0.2 s" in error and time.perf_counter() - start < 2
    assert guard(lambda: "alive") == ("alive", None)  # a fresh worker answers after the hung one
    inline = EnvGuard(None)
    assert inline(lambda: 3) == (3, None) and inline(lambda: {}["k"])[1].startswith("KeyError")
    with pytest.raises(ValueError, match="env_step_timeout_s"):
        EnvGuard(0)
    import pickle

    copy = pickle.loads(pickle.dumps(guard))  # ddp_spawn pickles the data module, and its guard with it
    assert copy.timeout_s == 0.2 and copy(lambda: 1) == (1, None)


# ---------------------------------------------------------------------- faulty environments
class _Faulty:
    """Wraps an env; its ``fault`` ("raise" or "hang") strikes at the second step of an episode."""

    def __init__(self, env, fault: str):
        self.env, self.fault, self.steps = env, fault, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, **kwargs):
        self.steps = 0
        return self.env.reset(**kwargs)

    def step(self, text):
        self.steps += 1
        if self.steps == 2:
            if self.fault == "raise":
                raise RuntimeError("engine crashed")
            time.sleep(3)
        return self.env.step(text)


def _faulty_envs(monkeypatch, fault: str, how_many: int):
    """The first ``how_many`` training envs built are faulty (replacements built later are healthy)."""
    made = {"train": 0}
    original = RolloutDataModule.make_env

    def make_env(self, split, seed):
        env = original(self, split, seed)
        if split == "train" and made["train"] < how_many:
            made["train"] += 1
            return _Faulty(env, fault)
        return env

    monkeypatch.setattr(RolloutDataModule, "make_env", make_env)


@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_a_faulty_environment_ends_only_its_episode(make_cfg, monkeypatch, fault):
    _faulty_envs(monkeypatch, fault, how_many=1)
    cfg = make_cfg("task=alfworld", "task.env.max_steps=4", "task.groups=4", "task.env_step_timeout_s=0.5",
                   "task.max_env_error_fraction=0.5", "validate_before_training=false")
    metrics, objects = train(cfg)
    assert float(metrics["rollout/env_errors"]) == 1.0
    module, datamodule = objects["model"], objects["datamodule"]
    failed = [e for e in module.last_rollout.episodes if e.error]
    assert len(failed) <= 1  # the group filter may have dropped its group
    for episode in failed:
        assert ("engine crashed" if fault == "raise" else "no answer within 0.5 s") in episode.error
        assert not [s for s in module.last_rollout.steps if s.traj_id == episode.traj_id]  # no rows trained on
    assert not any(isinstance(env, _Faulty) for env in datamodule.train_envs)  # replaced by a fresh env
    assert objects["trainer"].current_epoch == 1 and math.isfinite(float(metrics["val/success"]))  # the epoch went on


def test_too_many_environment_failures_stop_the_run_after_a_checkpoint(make_cfg, monkeypatch, tmp_path):
    _faulty_envs(monkeypatch, "raise", how_many=4)  # every training env of the smoke rollout
    cfg = make_cfg("task=webshop", "task.max_env_error_fraction=0.25", "validate_before_training=false")
    with pytest.raises(EnvironmentFailure, match=r"4 of 4 train episodes failed in environment 'webshop'.*"
                                                 r"engine crashed.*env_failure\.ckpt"):
        train(cfg)
    assert (tmp_path / "checkpoints" / "env_failure.ckpt").exists()


# ---------------------------------------------------------------------- non-finite numbers
def _poison_advantages(monkeypatch, rows_to_poison):
    original = AgentLitModule.prepare_rollout

    def prepare_rollout(self, rollout, played_metrics=None):
        rows = original(self, rollout, played_metrics)
        for i in rows_to_poison(len(rows)):
            rows[i]["advantage"] = float("nan")
        return rows

    monkeypatch.setattr(AgentLitModule, "prepare_rollout", prepare_rollout)


class _Weights(Callback):
    def on_train_start(self, trainer, module):
        self.start = {k: v.detach().clone() for k, v in module.named_parameters()}


def _train_with(cfg, monkeypatch, callback):
    from src.utils import instantiate_callbacks

    monkeypatch.setattr("src.train.instantiate_callbacks", lambda c: instantiate_callbacks(c) + [callback])
    return train(cfg)


def test_a_nan_advantage_skips_only_its_update(make_cfg, monkeypatch, tmp_path):
    _poison_advantages(monkeypatch, lambda n: [0])
    cfg = make_cfg("task=deepsearch", "task.mini_batch_size=2", "validate_before_training=false")
    weights = _Weights()
    metrics, objects = _train_with(cfg, monkeypatch, weights)
    assert float(metrics["train/skipped_updates"]) == 1.0
    assert math.isfinite(float(metrics["train/loss"]))  # the other mini-batches trained and logged
    module = objects["model"]
    assert any(not torch.equal(v, weights.start[k]) for k, v in module.named_parameters())
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_non_finite_gradients_never_reach_the_weights(make_cfg, monkeypatch):
    class _NanGradients(_Weights):
        def on_train_start(self, trainer, module):
            super().on_train_start(trainer, module)
            # every backward pass leaves a NaN gradient on one weight, the loss itself stays finite
            next(module.model.parameters()).register_hook(lambda g: g * float("nan"))

    cfg = make_cfg("task=deepsearch", "task.mini_batch_size=2", "validate_before_training=false",
                   "algo.max_consecutive_skips=1000")
    weights = _NanGradients()
    metrics, objects = _train_with(cfg, monkeypatch, weights)
    assert float(metrics["train/skipped_updates"]) >= 2
    for k, v in objects["model"].named_parameters():
        assert torch.equal(v, weights.start[k]), k  # no parameter moved, not even by Adam's momentum


def test_consecutive_skips_stop_the_run_with_a_clear_error(make_cfg, monkeypatch):
    _poison_advantages(monkeypatch, lambda n: range(n))
    cfg = make_cfg("task=deepsearch", "task.mini_batch_size=2", "validate_before_training=false",
                   "algo.max_consecutive_skips=2")
    with pytest.raises(FloatingPointError, match=r"2 consecutive updates had a non-finite advantage.*"
                                                 r"algo.max_consecutive_skips=2"):
        train(cfg)


# ---------------------------------------------------------------------- early, clear errors
SMALL = dict(task="deepsearch", vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1, extra_tokens=["<search>", "</search>"])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model saved as a Hugging Face directory (what ``model=hf`` loads)."""
    from src.policy.model import build_tiny_policy

    folder = tmp_path_factory.mktemp("hf")
    policy = build_tiny_policy(str(folder / "cache"), **SMALL)
    policy.model.save_pretrained(folder / "model")
    policy.tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def test_a_tokenizer_without_chat_template_is_refused_by_name(saved_model, tmp_path):
    import shutil

    from src.policy.model import load_hf_policy

    base = tmp_path / "base"
    shutil.copytree(saved_model, base)
    for name in ("tokenizer_config.json", "chat_template.jinja"):
        path = base / name
        if path.exists() and name.endswith(".jinja"):
            path.unlink()
        elif path.exists():
            import json

            config = json.loads(path.read_text())
            config.pop("chat_template", None)
            path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"has no chat template.*model.policy.chat_template=chatml"):
        load_hf_policy(str(base))
    policy = load_hf_policy(str(base), chat_template="chatml")
    assert "<|im_start|>" in policy.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    with pytest.raises(ValueError, match=r"model.policy.dtype='fp8' is not allowed; allowed values: float32"):
        load_hf_policy(str(base), dtype="fp8", chat_template="chatml")


def test_a_tokenizer_larger_than_the_embeddings_is_refused(saved_model):
    from src.policy.model import check_vocabulary, load_hf_policy

    policy = load_hf_policy(str(saved_model))
    rows = policy.model.get_input_embeddings().num_embeddings
    policy.tokenizer.add_tokens([f"<extra{i}>" for i in range(rows - len(policy.tokenizer) + 5)])
    with pytest.raises(ValueError, match=rf"tokenizer has {rows + 5} tokens but the model's embeddings have {rows} rows"):
        check_vocabulary(policy)


def test_a_prompt_that_cannot_fit_the_context_fails_before_any_rollout(make_cfg, monkeypatch):
    from src.data.rollout_datamodule import RolloutDataModule

    def no_rollout(*args, **kwargs):
        raise AssertionError("a rollout was played")

    monkeypatch.setattr(RolloutDataModule, "collect_rollout", no_rollout)
    monkeypatch.setattr(RolloutDataModule, "expert_demonstrations", no_rollout)
    cfg = make_cfg("task=deepsearch", "task.sampler.max_prompt_tokens=2040", "task.sampler.max_new_tokens=40")
    with pytest.raises(ValueError, match=r"max_prompt_tokens \(2040\) \+ task.sampler.max_new_tokens \(40\) = 2080 "
                                         r"exceeds the model's 2048 positions"):
        train(cfg)


@pytest.mark.parametrize("override, message", [
    ("task.groups=abc", r"task.groups='abc' must be an integer, got str"),
    ("task.group_size=0", r"task.group_size=0 is out of range: it must be >= 1"),
    ("task.sampler.temperature=0", r"task.sampler.temperature=0 is out of range: it must be > 0"),
    ("task.sampler.max_new_tokens=2.5", r"task.sampler.max_new_tokens=2.5 must be an integer"),
    ("task.max_env_error_fraction=1.5", r"task.max_env_error_fraction=1.5 is out of range: it must be >= 0 and <= 1"),
    ("task.expert_guidance=2", r"task.expert_guidance=2 must be in \[0, task.group_size=2\)"),
    ("task.val_temperature=0", r"task.val_temperature=0 is out of range: it must be > 0"),
    ("task.val_samples=0", r"task.val_samples=0 is out of range: it must be >= 1"),
    ("task.val_samples=2", r"task.val_samples=2 needs sampled validation \(task.val_temperature=<number>"),
    ("algo.max_consecutive_skips=0", r"algo.max_consecutive_skips must be >= 1"),
])
def test_a_wrong_config_value_names_its_key(make_cfg, override, message):
    import hydra
    from hydra.errors import InstantiationException

    cfg = make_cfg("task=deepsearch", override)
    with pytest.raises((ValueError, InstantiationException), match=message):
        hydra.utils.instantiate(cfg.task)
        hydra.utils.instantiate(cfg.model)
