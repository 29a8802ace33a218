"""Tests for the template utilities in ``src/utils``."""

import logging

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary
from lightning.pytorch.loggers import CSVLogger
from omegaconf import OmegaConf

from src.utils import (
    MetricNotFoundError,
    RankedLogger,
    enforce_tags,
    get_metric_value,
    instantiate_callbacks,
    instantiate_loggers,
    log_hyperparameters,
    task_wrapper,
)

# ------------------------------------------------------------------------------------ get_metric_value


def test_get_metric_value_none_name_returns_none():
    assert get_metric_value({"val/success": 0.5}, None) is None


def test_get_metric_value_reads_floats_and_tensors():
    metrics = {"val/success": torch.tensor(0.25), "train/loss": 1.5}
    value = get_metric_value(metrics, "val/success")
    assert isinstance(value, float) and value == pytest.approx(0.25)
    assert get_metric_value(metrics, "train/loss") == pytest.approx(1.5)


def test_get_metric_value_unknown_name_lists_available():
    metrics = {"val/success": torch.tensor(0.25), "train/loss": torch.tensor(1.0)}
    with pytest.raises(MetricNotFoundError) as info:
        get_metric_value(metrics, "val/acc")
    message = str(info.value)
    assert "val/acc" in message
    assert "train/loss" in message and "val/success" in message
    # Still a KeyError, so callers catching KeyError keep working.
    assert isinstance(info.value, KeyError)


# --------------------------------------------------------------------------------------- instantiators


def test_instantiate_callbacks_builds_targets_and_skips_the_rest():
    cfg = OmegaConf.create(
        {
            "model_summary": {"_target_": "lightning.pytorch.callbacks.ModelSummary", "max_depth": 2},
            "learning_rate_monitor": {
                "_target_": "lightning.pytorch.callbacks.LearningRateMonitor",
                "logging_interval": "epoch",
            },
            "disabled": None,
            "no_target": {"max_depth": 1},
        }
    )
    callbacks = instantiate_callbacks(cfg)
    assert [type(c) for c in callbacks] == [ModelSummary, LearningRateMonitor]
    assert callbacks[0]._max_depth == 2


@pytest.mark.parametrize("empty", [None, OmegaConf.create({}), {}])
def test_instantiate_empty_configs_give_empty_lists(empty):
    assert instantiate_callbacks(empty) == []
    assert instantiate_loggers(empty) == []


@pytest.mark.parametrize("bad", [OmegaConf.create([{"_target_": "x"}]), {"a": {"_target_": "x"}}, "csv"])
def test_instantiate_rejects_non_dictconfig(bad):
    with pytest.raises(TypeError, match="DictConfig"):
        instantiate_callbacks(bad)
    with pytest.raises(TypeError, match="DictConfig"):
        instantiate_loggers(bad)


def test_instantiate_loggers_builds_csv_logger(tmp_path):
    cfg = OmegaConf.create(
        {"csv": {"_target_": "lightning.pytorch.loggers.csv_logs.CSVLogger", "save_dir": str(tmp_path)}}
    )
    loggers = instantiate_loggers(cfg)
    assert len(loggers) == 1 and isinstance(loggers[0], CSVLogger)
    assert loggers[0].save_dir == str(tmp_path)


# ---------------------------------------------------------------------------------------- RankedLogger


def test_ranked_logger_logs_on_rank_zero_with_prefix(caplog):
    log = RankedLogger("tests.ranked", rank_zero_only=True)
    with caplog.at_level(logging.INFO, logger="tests.ranked"):
        log.info("hello %s", "world")
    assert [r.getMessage() for r in caplog.records] == ["[rank: 0] hello world"]


def test_ranked_logger_rank_zero_only_is_silent_on_other_ranks(caplog, monkeypatch):
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with caplog.at_level(logging.INFO, logger="tests.ranked"):
        RankedLogger("tests.ranked", rank_zero_only=True).info("only rank 0")
        RankedLogger("tests.ranked").info("every rank")
        RankedLogger("tests.ranked").info("rank 0 please", rank=0)
    assert [r.getMessage() for r in caplog.records] == ["[rank: 1] every rank"]


def test_ranked_logger_keeps_extra(caplog):
    log = RankedLogger("tests.ranked", extra={"run": "abc"})
    with caplog.at_level(logging.INFO, logger="tests.ranked"):
        log.info("x", extra={"step": 3})
    assert caplog.records[0].run == "abc" and caplog.records[0].step == 3


# ---------------------------------------------------------------------------------------- task_wrapper


def test_task_wrapper_returns_and_reraises(tmp_path, caplog):
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})

    @task_wrapper
    def ok(cfg):
        return {"m": 1.0}, {"cfg": cfg}

    @task_wrapper
    def boom(cfg):
        raise ValueError("broken task")

    with caplog.at_level(logging.INFO):
        assert ok(cfg) == ({"m": 1.0}, {"cfg": cfg})
        with pytest.raises(ValueError, match="broken task"):
            boom(cfg)
    assert sum(f"Output dir: {tmp_path}" in r.getMessage() for r in caplog.records) == 2


def test_task_wrapper_does_not_mask_the_error_when_output_dir_is_unresolvable():
    # `${hydra:...}` cannot resolve outside a Hydra app; the task's own error must still come through.
    cfg = OmegaConf.create({"paths": {"output_dir": "${hydra:runtime.output_dir}"}})

    @task_wrapper
    def boom(cfg):
        raise RuntimeError("the real error")

    with pytest.raises(RuntimeError, match="the real error"):
        boom(cfg)


# ------------------------------------------------------------------------------ enforce_tags / hparams


def test_enforce_tags_defaults_to_dev_without_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    cfg = OmegaConf.create({"tags": None, "paths": {"output_dir": str(tmp_path)}})
    OmegaConf.set_struct(cfg, True)
    enforce_tags(cfg, save_to_file=True)
    assert list(cfg.tags) == ["dev"]
    assert "dev" in (tmp_path / "tags.log").read_text()


def test_enforce_tags_keeps_given_tags(tmp_path):
    cfg = OmegaConf.create({"tags": ["empg", "deepsearch"], "paths": {"output_dir": str(tmp_path)}})
    enforce_tags(cfg)
    assert list(cfg.tags) == ["empg", "deepsearch"]


class _RecordingLogger(CSVLogger):
    def __init__(self, save_dir):
        super().__init__(save_dir)
        self.logged = None

    def log_hyperparams(self, params, *args, **kwargs):
        self.logged = params


class _FakeTrainer:
    def __init__(self, loggers):
        self.loggers = loggers
        self.logger = loggers[0] if loggers else None


def test_log_hyperparameters_sends_curated_dict_with_param_counts(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))  # 8 + 3 parameters
    model[1].weight.requires_grad_(False)  # 2 frozen
    cfg = OmegaConf.create(
        {
            "algo": {"name": "empg", "lr": 1e-3},
            "model": {"hidden": 2},
            "task": {"name": "deepsearch"},
            "trainer": {"max_epochs": "${algo.epochs}"},
            "seed": 7,
            "tags": ["dev"],
            "paths": {"output_dir": "/not/logged"},
        }
    )
    cfg.algo.epochs = 3
    loggers = [_RecordingLogger(tmp_path), _RecordingLogger(tmp_path)]
    log_hyperparameters({"cfg": cfg, "model": model, "trainer": _FakeTrainer(loggers)})

    for logger in loggers:
        hp = logger.logged
        assert hp["model/params/total"] == 11
        assert hp["model/params/trainable"] == 9
        assert hp["model/params/non_trainable"] == 2
        assert hp["algo"]["name"] == "empg" and hp["seed"] == 7 and hp["tags"] == ["dev"]
        assert hp["trainer"]["max_epochs"] == 3  # interpolations resolved
        assert "paths" not in hp


def test_log_hyperparameters_without_logger_is_a_no_op():
    cfg = OmegaConf.create({"seed": 1})
    log_hyperparameters({"cfg": cfg, "model": torch.nn.Linear(1, 1), "trainer": _FakeTrainer([])})
