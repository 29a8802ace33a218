"""Every algo x task x model config composes and instantiates; wrong choices fail with Hydra's
message naming the allowed values."""
from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

from conftest import CONFIG_DIR

ALGOS = sorted(p.stem for p in Path(CONFIG_DIR, "algo").glob("*.yaml"))
TASKS = sorted(p.stem for p in Path(CONFIG_DIR, "task").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml"))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("algo", ALGOS)
def test_algo_task_configs_compose(make_cfg, algo, task):
    cfg = make_cfg(f"algo={algo}", f"task={task}", fast=False)
    assert cfg.algo.name == algo
    assert cfg.task.env_name == task
    # the loss scores tokens at the temperature they were sampled with
    assert cfg.model.temperature == cfg.task.sampler.temperature
    hydra.utils.instantiate(cfg.trainer)
    hydra.utils.instantiate(cfg.task)


def test_empg_config_is_grpo_plus_modulation(make_cfg):
    empg, grpo = make_cfg("algo=empg"), make_cfg("algo=grpo")
    assert empg.algo.empg.enabled and not grpo.algo.empg.enabled
    assert {k: empg.algo.empg[k] for k in ("k", "k_future", "zeta", "eps")} == {
        "k": 1.0, "k_future": 1.0, "zeta": 0.1, "eps": 1e-8}
    assert empg.algo.estimator == grpo.algo.estimator


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_configs_compose(make_cfg, experiment):
    assert make_cfg(f"experiment={experiment}", fast=False)


def test_eval_config_composes(make_cfg):
    cfg = make_cfg("ckpt_path=some.ckpt", config_name="eval.yaml", fast=False)
    assert cfg.ckpt_path == "some.ckpt"


@pytest.mark.parametrize("group,options", [("algo", ALGOS), ("task", TASKS)])
def test_wrong_choice_lists_allowed_values(group, options):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as err:
            compose(config_name="train.yaml", overrides=[f"{group}=nope"])
    message = str(err.value)
    assert f"Could not find '{group}/nope'" in message
    for option in options:
        assert option in message
    GlobalHydra.instance().clear()


def test_debug_smoke_wins_over_defaults(make_cfg):
    cfg = make_cfg()
    assert cfg.trainer.max_epochs == 1 and cfg.task.groups == 2 and cfg.model.warmstart.steps == 2


@pytest.mark.parametrize("retriever", ["bm25", "dense", "remote"])
def test_retriever_group_reaches_the_deepsearch_env(make_cfg, retriever):
    cfg = make_cfg("task=deepsearch", f"retriever={retriever}", fast=False)
    assert cfg.task.env.retriever.name == retriever
    if retriever == "dense":
        assert cfg.task.env.retriever.query_prefix == "query: " and cfg.task.env.retriever.index_dir.endswith("dense_index")
    if retriever == "remote":
        assert cfg.task.env.retriever.url.endswith("/retrieve")


@pytest.mark.parametrize("algo", ["gigpo", "gigpo_empg"])
def test_gigpo_runs_without_the_group_filter_and_with_verl_agent_defaults(make_cfg, algo):
    # The all-equal-returns filter would drop groups whose step-level GiGPO advantages are not zero
    # (all successes of different lengths); verl-agent's ALFWorld script: gamma .95, w 1, mean_std_norm.
    cfg = make_cfg(f"algo={algo}", fast=False)
    assert cfg.algo.filter_groups is False
    assert dict(cfg.algo.estimator) == {"name": "gigpo", "gamma": 0.95, "step_weight": 1.0, "norm_by_std": True}


@pytest.mark.parametrize("task,tiny_caps", [
    ("alfworld", (1024, 48)), ("webshop", (1536, 48)), ("deepsearch", (1024, 40))])
def test_length_caps_follow_the_model(make_cfg, task, tiny_caps):
    # verl-agent's caps for real models (2,048 prompt / 512 response tokens); the tiny model keeps short ones
    tiny = make_cfg(f"task={task}", fast=False)
    assert (tiny.task.sampler.max_prompt_tokens, tiny.task.sampler.max_new_tokens) == tiny_caps
    hf = make_cfg(f"task={task}", "model=hf", fast=False)
    assert (hf.task.sampler.max_prompt_tokens, hf.task.sampler.max_new_tokens) == (2048, 512)
    assert hf.model.policy._target_ == "src.policy.model.load_hf_policy"
    override = make_cfg(f"task={task}", "model=hf", "task.sampler.max_new_tokens=64", fast=False)
    assert override.task.sampler.max_new_tokens == 64
