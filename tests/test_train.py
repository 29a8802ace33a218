"""End-to-end: the whole loop (warm start -> rollout -> update -> validate) on every task, one
optimisation step changes the parameters, and a run resumes from its last checkpoint."""
import csv
import math
from pathlib import Path

import hydra
import pytest
import torch
from lightning import Callback, Trainer

from conftest import FAST_OVERRIDES, compose_cfg
from src.data.rollout_datamodule import RolloutDataModule
from src.train import train

CONFIGS = Path(__file__).parents[1] / "configs"
TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))
ALGOS = sorted(p.stem for p in (CONFIGS / "algo").glob("*.yaml"))


def test_every_algorithm_has_an_empg_variant():
    bases = {a for a in ALGOS if not a.endswith("_empg") and a != "empg"}
    assert bases >= {"grpo", "rloo", "reinforce_pp", "dapo", "gigpo", "ppo"}
    for base in bases - {"grpo"}:  # GRPO's is the paper's own, algo=empg
        assert f"{base}_empg" in ALGOS


#: shorter episodes for the smoke matrix only (the loop is the same at any length)
SMOKE_TASK_OVERRIDES = {"alfworld": ["task.env.max_steps=10"]}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("task", TASKS)
def test_smoke_epoch_runs_whole_loop(make_cfg, tmp_path, task, algo, monkeypatch):
    cfg = make_cfg(f"task={task}", f"algo={algo}", *SMOKE_TASK_OVERRIDES.get(task, []))
    snapshot = _Snapshot()
    monkeypatch.setattr("src.train.instantiate_callbacks", _with_callback(snapshot))
    metrics, objects = train(cfg)
    for key in ("val/success", "val/success_initial", "rollout/success", "time/rollout_s", "adv/std"):
        assert key in metrics, sorted(metrics)
    # debug=smoke's expert-played group member gives every group a success to compare with (the smoke
    # agent itself fails), so every cell takes real updates: non-zero advantages, a loss, moved weights
    assert float(metrics["rollout/expert_episodes"]) == cfg.task.groups
    assert float(metrics["adv/base_std"]) > 0.0
    # a group's members all start from the same reset, so at least their first steps share a state
    assert 0.0 < float(metrics["rollout/shared_state_frac"]) <= 1.0
    assert "train/loss" in metrics and math.isfinite(float(metrics["train/loss"]))
    trainer = objects["trainer"]
    assert trainer.global_step > 0
    module = objects["model"]
    moved = [k for k, v in module.model.named_parameters() if not torch.equal(v.detach(), snapshot.before[k])]
    assert moved, "no parameter changed in the epoch"
    if cfg.algo.empg.enabled:
        assert float(metrics["adv/std"]) == pytest.approx(1.0, abs=1e-3)
    assert "prop1/score_norm_sq" in metrics and "prop1/expected_score_norm_sq" in metrics
    assert 0.0 <= float(metrics["val/success"]) <= 1.0
    if task == "deepsearch":  # 4 validation questions: the first of nq, triviaqa, popqa, hotpotqa
        family_em = [float(metrics[f"val/task/em_{f}"]) for f in ("nq", "triviaqa", "popqa", "hotpotqa")]
        assert float(metrics["val/task/em_average"]) == pytest.approx(sum(family_em) / 4)
        assert float(metrics["val/task/em_in_domain"]) == pytest.approx((family_em[0] + family_em[3]) / 2)
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents*"))


def _with_callback(extra: Callback):
    """``src.train.instantiate_callbacks`` that also returns ``extra``."""
    from src.utils import instantiate_callbacks

    return lambda cfg: instantiate_callbacks(cfg) + [extra]


class _Snapshot(Callback):
    """Parameters just before the first optimisation step and after the last."""

    def on_train_start(self, trainer, module):
        self.before = {k: v.detach().clone() for k, v in module.model.named_parameters()}


def test_one_optimisation_step_changes_parameters(make_cfg):
    # no filter: the smoke agent fails every episode, and a filtered batch would carry no signal
    cfg = make_cfg("algo=empg", "algo.filter_groups=false")
    datamodule = hydra.utils.instantiate(cfg.task)
    module = hydra.utils.instantiate(cfg.model)
    snapshot = _Snapshot()
    trainer = Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, callbacks=[snapshot],
                      reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0)
    trainer.fit(module, datamodule)
    assert trainer.global_step == 1
    changed = [k for k, v in module.model.named_parameters() if not torch.equal(v, snapshot.before[k])]
    assert changed, "no parameter changed after one optimisation step"
    assert all(torch.isfinite(v).all() for v in module.model.parameters())
    # EMPG ran on the rollout and logged its factors
    assert "empg/g_mean" in module._rollout_metrics
    assert abs(module._rollout_metrics["empg/g_mean"] - 1.0) < 1e-5


def test_resume_from_last_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg()
    train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.exists()
    first_state = torch.load(last, map_location="cpu", weights_only=False)
    assert first_state["epoch"] == 0
    resumed = make_cfg(f"ckpt_path={last}", "trainer.max_epochs=2")
    metrics, objects = train(resumed)
    assert objects["trainer"].current_epoch == 2
    assert "val/success" in metrics
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] > first_state["epoch"] and state["global_step"] > first_state["global_step"]


def test_extending_a_finished_run_replays_no_epoch(make_cfg, tmp_path, artifact_dir, monkeypatch):
    """A finished run resumed with a larger max_epochs goes on from its last state. Its last.ckpt was
    written at the last epoch's validation, and Lightning asks for that epoch's data again: a fresh
    rollout there would cost minutes, and one with more mini-batches than the epoch had got trained
    (ALFWorld, docs/tuning.md run 12: one update more than the run left alone)."""
    played = []
    collect = RolloutDataModule.collect_rollout

    def counted(self, policy, epoch, *args, **kwargs):
        played.append(epoch)
        return collect(self, policy, epoch, *args, **kwargs)

    monkeypatch.setattr(RolloutDataModule, "collect_rollout", counted)
    # validated every 2nd epoch (ALFWorld's and WebShop's setting), so last.ckpt is written at validation
    settings = ("algo.filter_groups=false", "trainer.accumulate_grad_batches=2", "trainer.check_val_every_n_epoch=2")
    reference = compose_cfg("train.yaml", [*FAST_OVERRIDES, *settings, "trainer.max_epochs=4"],
                            tmp_path / "reference", artifact_dir)
    train(reference)
    assert played == [0, 1, 2, 3]
    played.clear()
    train(make_cfg(*settings, "trainer.max_epochs=2"))
    train(make_cfg(*settings, "trainer.max_epochs=4", "ckpt_path=last"))
    assert played == [0, 1, 2, 3]  # 0-1 by the first process, 2-3 by the resumed one: epoch 1 not again
    ref = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    end = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert end["global_step"] == ref["global_step"] > 0
    for name, tensor in ref["state_dict"].items():
        assert torch.equal(end["state_dict"][name], tensor), name


def test_training_without_a_logger_drops_the_learning_rate_monitor(make_cfg):
    cfg = make_cfg("logger=[]")
    assert "learning_rate_monitor" in cfg.callbacks  # the default callbacks include it
    metrics, objects = train(cfg)
    assert objects["logger"] == [] and "val/success" in metrics
    assert not any(type(c).__name__ == "LearningRateMonitor" for c in objects["callbacks"])


def test_last_ckpt_is_the_last_epoch_even_when_validation_never_improves(make_cfg, tmp_path):
    # The smoke agent scores 0 at every validation, so the best checkpoint stays at epoch 0; Lightning
    # 2.6's save_last would have left last.ckpt there too.
    cfg = make_cfg("trainer.max_epochs=3", "algo.filter_groups=false")
    metrics, objects = train(cfg)
    trainer = objects["trainer"]
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["global_step"] == trainer.global_step > 0
    assert len(list((tmp_path / "checkpoints").glob("epoch_*.ckpt"))) == 1  # the best epoch is kept beside it

    # the run's learning curve: the initial validation, then one row per epoch, env steps accumulating
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[0]["env_steps"]) == 0.0 and rows[0]["rollout/env_steps"] == ""
    per_epoch = [float(r["rollout/env_steps"]) for r in rows[1:]]
    assert all(n >= cfg.task.groups * cfg.task.group_size for n in per_epoch)  # every episode takes a step
    assert [float(r["env_steps"]) for r in rows[1:]] == [sum(per_epoch[:k + 1]) for k in range(3)]
    assert float(rows[-1]["val/success"]) == pytest.approx(float(metrics["val/success"]))
    assert float(rows[0]["val/success"]) == pytest.approx(float(metrics["val/success_initial"]))
    assert int(rows[-1]["global_step"]) == trainer.global_step
    # the last epoch's Proposition 1 table: one row per trained step, finite
    prop1 = list(csv.DictReader(open(tmp_path / "prop1.csv")))
    assert prop1 and all(math.isfinite(float(v)) for r in prop1 for v in r.values())


def test_zero_epochs_reports_the_warm_start_as_the_final_policy(make_cfg):
    # `trainer.max_epochs=0` evaluates the warm start alone; the run's metric (optimized_metric) must
    # still exist, and it is the initial validation's, since no update ran
    metrics, objects = train(make_cfg("trainer.max_epochs=0"))
    assert objects["trainer"].global_step == 0
    assert float(metrics["val/success"]) == float(metrics["val/success_initial"])
    assert metrics.keys() >= {"val/success", "val/invalid_action_rate", "val/invalid_action_rate_initial"}


def test_evaluating_the_best_checkpoint_keeps_the_initial_row(make_cfg, tmp_path):
    # `test: true` validates the best checkpoint after training: that pass is not a point of the learning
    # curve, and must not replace row 0 (the warm-started policy before any update)
    metrics, objects = train(make_cfg("test=true"))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert int(rows[0]["global_step"]) == 0
    assert float(rows[0]["val/success"]) == pytest.approx(float(metrics["val/success_initial"]))
    assert "test/success" in metrics


def test_truncated_prompts_are_counted(make_cfg):
    """Every prompt longer than task.sampler.max_prompt_tokens is cut, and rollout/truncated_prompts says how many."""
    metrics, _ = train(make_cfg("task=deepsearch", "task.sampler.max_prompt_tokens=24", "callbacks=none", "logger=csv"))
    assert float(metrics["rollout/truncated_prompts"]) == float(metrics["rollout/env_steps"]) > 0
    metrics, _ = train(make_cfg("task=deepsearch", "callbacks=none", "logger=csv"))
    assert float(metrics["rollout/truncated_prompts"]) == 0.0
