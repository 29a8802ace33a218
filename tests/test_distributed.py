"""A batch split over two DDP processes (Lightning's ddp_spawn, gloo on CPU) gives exactly the
advantages and the gradients of the same batch on one process: the statistics EMPG (and the
batch-normalising estimators) need are global."""
import copy
from pathlib import Path

import hydra
import pytest
import torch
from lightning import Trainer
from omegaconf import open_dict

from src.algos.empg import empg_advantages
from src.algos.estimators import StepBatch, compute_base_advantages
from src.rollout.synthetic import synthetic_rollout
from helpers.ddp_replay import ReplayDataModule, SaveGradients, rows_of

GROUPS, GROUP_SIZE, STEPS = 4, 3, 3


def _rollout_kwargs(vocab_size):
    # fixed lengths: both ranks hold the same number of rows and tokens, so the mean of the two
    # ranks' token-mean losses is the token-mean loss of the whole batch
    return dict(num_groups=GROUPS, group_size=GROUP_SIZE, max_steps=STEPS, vocab_size=vocab_size, seed=3,
                prompt_len=12, response_len=4, success_rate=0.5, fixed_length=True)


def _fit(module, cfg, out_dir: Path, devices: int):
    out_dir.mkdir()
    task = dict(cfg.task)
    task.pop("_target_")
    datamodule = ReplayDataModule(_rollout_kwargs(len(module.tokenizer)), str(out_dir),
                                  **{**task, "sampler": hydra.utils.instantiate(cfg.task.sampler)})
    trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                      max_epochs=1, limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      reload_dataloaders_every_n_epochs=1, use_distributed_sampler=False,
                      callbacks=[SaveGradients(str(out_dir))])
    trainer.fit(module, datamodule)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["empg", "reinforce_pp_empg"])
def test_ddp_spawn_matches_single_process(make_cfg, tmp_path, algo):
    cfg = make_cfg(f"algo={algo}", "model.warmstart.enabled=false", "algo.filter_groups=false",
                   "algo.kl_coef=0", f"task.groups={GROUPS}", f"task.group_size={GROUP_SIZE}",
                   "task.mini_batch_size=1000", "model.optimizer._target_=torch.optim.SGD")
    with open_dict(cfg):
        cfg.model.optimizer.pop("weight_decay", None)
    module = hydra.utils.instantiate(cfg.model)
    single_module = copy.deepcopy(module)

    _fit(single_module, cfg, tmp_path / "single", devices=1)
    _fit(module, cfg, tmp_path / "ddp", devices=2)

    single = rows_of(tmp_path / "single", [0])
    split = rows_of(tmp_path / "ddp", [0, 1])
    assert len(single) == GROUPS * GROUP_SIZE * STEPS and split.keys() == single.keys()
    for prompt, adv in single.items():
        assert split[prompt] == pytest.approx(adv, abs=1e-5)

    g_single = torch.load(tmp_path / "single" / "grads_rank0.pt")
    for rank in (0, 1):
        g_ddp = torch.load(tmp_path / "ddp" / f"grads_rank{rank}.pt")
        assert g_ddp.keys() == g_single.keys() and len(g_single) > 0
        for name, grad in g_single.items():
            torch.testing.assert_close(g_ddp[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_the_split_batch_would_differ_with_per_rank_statistics():
    """Guards the test above: on this batch, EMPG computed per half differs from EMPG on the whole
    batch, so matching advantages really show that the statistics were global."""
    full = synthetic_rollout(**_rollout_kwargs(100))
    b, t = GROUPS * GROUP_SIZE, STEPS
    mask, rewards, entropy = torch.zeros(b, t, dtype=torch.bool), torch.zeros(b, t), torch.zeros(b, t)
    for s in full.steps:
        mask[s.traj_id, s.step_idx], rewards[s.traj_id, s.step_idx] = True, s.reward
        entropy[s.traj_id, s.step_idx] = s.step_entropy
    groups = torch.tensor([e.group_id for e in full.episodes])
    batch = StepBatch(mask=mask, step_rewards=rewards, entropy=entropy, group_ids=groups,
                      anchors=torch.zeros(b, t, dtype=torch.long))
    whole = empg_advantages(compute_base_advantages("grpo", batch).advantages, entropy, mask)
    half = b // 2
    first = batch.map(lambda x: x[:half])
    per_rank = empg_advantages(compute_base_advantages("grpo", first).advantages, first.entropy, first.mask)
    assert (whole[:half] - per_rank).abs().max() > 1e-2
