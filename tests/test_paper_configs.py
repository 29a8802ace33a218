"""experiment=paper_alfworld|paper_webshop|paper_deepsearch: the paper's GPU setups (verl-agent's scripts'
numbers) compose, and on a machine without a CUDA GPU they stop before anything is loaded or built."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import ROOT
from src.utils.checks import NoGPUError, require_cuda_if_asked

#: the values each recipe must carry (../shared/reference/environments.md §1.8, ../shared/EMPG.md)
EXPECTED = {
    "paper_alfworld": {
        "model.name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "task.env_name": "alfworld",
        "task.groups": 16, "task.group_size": 8, "task.env.max_steps": 50, "task.env.invalid_action_penalty": 0.1,
        "task.sampler.prompt_builder.history_length": 2, "task.sampler.max_prompt_tokens": 2048,
        "task.sampler.max_new_tokens": 512, "model.optimizer.lr": 1e-6, "algo.kl_coef": 0.01,
        "trainer.max_epochs": 150, "trainer.devices": 2,
    },
    "paper_webshop": {
        "model.name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "task.env_name": "webshop",
        "task.groups": 16, "task.group_size": 8, "task.env.max_steps": 15, "task.env.invalid_action_penalty": 0.1,
        "task.sampler.prompt_builder.history_length": 2, "task.sampler.max_prompt_tokens": 4096,
        "task.sampler.max_new_tokens": 512, "model.optimizer.lr": 1e-6, "algo.kl_coef": 0.01,
        "trainer.max_epochs": 150, "trainer.devices": 2,
    },
    "paper_deepsearch": {
        "model.name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "task.env_name": "deepsearch",
        "task.groups": 256, "task.group_size": 5, "task.env.max_turns": 4, "task.env.invalid_action_penalty": 0.01,
        "task.sampler.prompt_builder.history_length": 4, "task.sampler.max_prompt_tokens": 4096,
        "task.sampler.max_new_tokens": 512, "model.optimizer.lr": 1e-6, "algo.kl_coef": 0.001,
        "trainer.max_epochs": 662, "trainer.devices": 8,
    },
}
#: the same in every recipe: EMPG on GRPO, vLLM rollouts, bf16 compute over fp32 weights, DDP on GPUs
COMMON = {
    "algo.name": "empg", "algo.empg.enabled": True, "algo.filter_groups": False, "algo.kl_type": "low-var",
    "algo.recompute_old_logprobs": True, "model.policy._target_": "src.policy.model.load_hf_policy",
    "model.policy.dtype": "float32", "model.policy.autocast": "bf16", "trainer.precision": "bf16-mixed",
    "trainer.accelerator": "gpu", "trainer.strategy": "ddp", "trainer.accumulate_grad_batches": 4,
    "rollout.backend": "vllm", "task.expert_guidance": 0,
}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop on a machine without a CUDA GPU")


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_paper_config_carries_the_papers_numbers(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", fast=False)
    for key, value in {**EXPECTED[experiment], **COMMON}.items():
        assert OmegaConf.select(cfg, key) == value, key
    # each update sees verl-agent's ppo_mini_batch_size rows: GPUs x rows per GPU x accumulated micro-batches
    rows = cfg.trainer.devices * cfg.task.mini_batch_size * cfg.trainer.accumulate_grad_batches
    assert rows == {"paper_alfworld": 256, "paper_webshop": 64, "paper_deepsearch": 512}[experiment]
    assert cfg.task.groups % cfg.trainer.devices == 0  # every GPU plays whole groups
    assert "paper" in cfg.tags


@no_cuda
@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_paper_config_stops_without_a_gpu(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", fast=False)
    with pytest.raises(NoGPUError, match=f"No CUDA GPU is available.*experiment={experiment}"):
        require_cuda_if_asked(cfg)


def test_gpu_check_passes_cpu_configs_and_counts_devices(make_cfg, monkeypatch):
    require_cuda_if_asked(make_cfg(fast=False))  # the default trainer: CPU
    require_cuda_if_asked(make_cfg("trainer=ddp_sim", fast=False))
    gpu = make_cfg("trainer=gpu", fast=False)
    if not torch.cuda.is_available():
        with pytest.raises(NoGPUError, match="trainer.accelerator=gpu, trainer=gpu"):
            require_cuda_if_asked(gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    require_cuda_if_asked(gpu)  # one GPU asked for, one there
    ddp = make_cfg("experiment=paper_alfworld", fast=False)
    with pytest.raises(NoGPUError, match=r"1 CUDA GPU is visible, but the config asks for 2 \(trainer.devices=2\)"):
        require_cuda_if_asked(ddp)
    for devices, ok in ((1, True), ("1", True), ([0], True), ([1], False), ("0,1", False), (-1, True)):
        ddp.trainer.devices = devices
        if ok:
            require_cuda_if_asked(ddp)
        else:
            with pytest.raises(NoGPUError):
                require_cuda_if_asked(ddp)


@no_cuda
@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_train_cli_stops_before_building_anything(tmp_path, experiment):
    """The real entry point exits non-zero with the message within seconds, and writes no artifact."""
    artifacts = tmp_path / "artifacts"
    command = [sys.executable, str(Path(ROOT) / "src" / "train.py"), f"experiment={experiment}",
               f"hydra.run.dir={tmp_path / 'run'}", f"paths.artifact_dir={artifacts}", "extras.print_config=false"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180, env=env)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "No CUDA GPU is available" in output and f"experiment={experiment}" in output, output[-2000:]
    assert "Instantiating datamodule" not in output and not artifacts.exists()
