"""The algorithm settings around the estimators: dynamic sampling with refill, reward shaping
(overlong penalty, KL in the reward), the value head's rollout values, GiGPO's anchors, and config
errors that name the key."""
import copy
from collections import Counter
from types import SimpleNamespace

import hydra
import pytest
import torch
from lightning import Callback, Trainer

from src.algos.advantages import anchor_ids, grpo_advantages
from src.algos.empg import empg_advantages
from src.data.batch import response_logits, score_rows, token_log_probs
from src.data.rollout_datamodule import LengthGroupedBatches, RolloutDataModule
from src.rollout.sampler import EpisodeRecord, RolloutResult, StepRecord
from src.rollout.synthetic import synthetic_rollout


class ScriptedSampler:
    """Plays nothing: group g is informative (one member wins) iff g % 3 == 0."""

    show_progress = False
    max_new_tokens = 8

    def __init__(self):
        self.calls = 0

    def play(self, policy, envs, resets, group_ids, greedy=False, generator=None, expert=None, guard=None):
        self.calls += 1
        steps, episodes = [], []
        for i, gid in enumerate(group_ids):
            won = gid % 3 == 0 and (i == 0 or group_ids[i - 1] != gid)  # first member of the group
            steps.append(StepRecord(gid, i, 0, [5], [6], [-1.0], [1.0], float(won), True, True, "obs", ""))
            episodes.append(EpisodeRecord(gid, i, gid, 1, float(won), won, 0))
        return RolloutResult(steps=steps, episodes=episodes)


@pytest.fixture
def datamodule():
    dm = RolloutDataModule(env_name="deepsearch", sampler=ScriptedSampler(), groups=4, group_size=2, val_split="test")
    dm.setup("fit")
    return dm


def test_dynamic_sampling_refills_until_the_batch_is_full(datamodule):
    rollout, metrics = datamodule.collect_rollout(None, epoch=0, filter_groups=True, max_gen_batches=10)
    # attempt 0 plays groups 0-3 (keeps 0, 3), attempt 1 groups 4-7 (keeps 6), attempt 2 groups 8-11
    # (keeps 9: full); dropped: {1, 2} + {4, 5, 7} + {8, 10, 11} = 8
    assert datamodule.sampler.calls == 3
    assert [e.group_id for e in rollout.episodes] == [0, 0, 3, 3, 6, 6, 9, 9]
    assert [e.traj_id for e in rollout.episodes] == list(range(8))
    assert [s.traj_id for s in rollout.steps] == list(range(8))
    assert metrics["rollout/gen_batches"] == 3 and metrics["rollout/dropped_groups"] == 8
    assert metrics["rollout/kept_groups"] == 4
    assert metrics["rollout/informative_group_frac"] == pytest.approx(4 / 12)
    # success over every episode played: one winner in each of groups 0, 3, 6, 9 of 24 episodes
    assert metrics["rollout/success"] == pytest.approx(4 / 24)


def test_retry_cap_and_no_filter(datamodule):
    rollout, metrics = datamodule.collect_rollout(None, epoch=0, filter_groups=True, max_gen_batches=2)
    assert [e.group_id for e in rollout.episodes] == [0, 0, 3, 3, 6, 6]  # cap hit with 3 of 4 groups
    assert metrics["rollout/gen_batches"] == 2
    rollout, metrics = datamodule.collect_rollout(None, epoch=0, filter_groups=False, max_gen_batches=10)
    assert [e.group_id for e in rollout.episodes] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert metrics["rollout/gen_batches"] == 1 and metrics["rollout/dropped_groups"] == 0


def test_resets_differ_between_attempts_and_members_share_one(datamodule):
    first, ids0 = datamodule.train_resets(epoch=0, attempt=0)
    again, ids1 = datamodule.train_resets(epoch=0, attempt=1)
    assert ids0 == [0, 0, 1, 1, 2, 2, 3, 3] and ids1 == [4, 4, 5, 5, 6, 6, 7, 7]
    assert first[0] == first[1] and first != again


def _module(make_cfg, *overrides):
    cfg = make_cfg("model.warmstart.enabled=false", *overrides)
    return hydra.utils.instantiate(cfg.model)


def test_overlong_penalty_is_a_row_penalty(make_cfg):
    module = _module(make_cfg, "algo=dapo")
    rollout = synthetic_rollout(1, 3, 1, 50, seed=0, fixed_length=True)
    for step, length, invalid in zip(rollout.steps, (8, 9, 10), (0.0, 0.1, 0.0)):
        step.response_ids, step.old_log_probs, step.token_entropies = [7] * length, [-1.0] * length, [1.0] * length
        step.reward, step.penalty = 1.0, invalid
    # max_new_tokens 10, buffer 0.2 * 10 = 2 tokens: length 8 -> 0, 9 -> (8 - 9) / 2 = -0.5, 10 -> -1;
    # added to the env's invalid-action penalty of the row; the step rewards (the return) stay untouched
    batch, metrics = module._step_batch(rollout, num_traj=3, horizon=1, max_new_tokens=10)
    torch.testing.assert_close(batch.step_rewards[:, 0], torch.tensor([1.0, 1.0, 1.0]))
    torch.testing.assert_close(batch.penalties[:, 0], torch.tensor([0.0, 0.6, 1.0]))
    assert metrics["reward/overlong_penalty"] == pytest.approx(-0.5)  # mean of 0, -0.5, -1
    assert metrics["reward/invalid_penalty"] == pytest.approx(0.1 / 3)


def test_kl_in_reward_subtracts_each_steps_summed_kl(make_cfg):
    module = _module(make_cfg, "algo=reinforce_pp", "algo.kl_coef=0.5", "algo.kl_type=k1")
    module.ref_model = copy.deepcopy(module.model).eval()
    rollout = synthetic_rollout(1, 2, 2, len(module.tokenizer), seed=1, fixed_length=True)
    batch, metrics = module._step_batch(rollout, num_traj=2, horizon=2, max_new_tokens=8)
    rows = [s.training_row(0.0) for s in rollout.steps]
    ref = score_rows(module.ref_model, rows, module.tokenizer.pad_token_id).log_probs
    for s, ref_lp in zip(rollout.steps, ref):
        kl = sum(o - r for o, r in zip(s.old_log_probs, ref_lp))  # k1 summed over the step's tokens
        assert batch.step_rewards[s.traj_id, s.step_idx].item() == pytest.approx(s.reward - 0.5 * kl, abs=1e-4)
    assert "reward/kl" in metrics


def test_value_head_values_and_anchors(make_cfg):
    module = _module(make_cfg, "algo=ppo")
    assert module.value_head is not None
    torch.nn.init.constant_(module.value_head.bias, 0.25)
    rollout = synthetic_rollout(2, 2, 3, len(module.tokenizer), seed=2)
    batch, _ = module._step_batch(rollout, num_traj=5, horizon=3, max_new_tokens=8)  # one padding trajectory
    assert batch.values is not None
    torch.testing.assert_close(batch.values[batch.mask], torch.full((len(rollout.steps),), 0.25))
    assert not batch.mask[4].any() and batch.group_ids[4] < 0
    for s in rollout.steps:
        assert batch.anchors[s.traj_id, s.step_idx] == anchor_ids([s.anchor_obs])[0]
    # group members share their first observation, so GiGPO can group their first steps
    first = batch.anchors[:2, 0]
    assert first[0] == first[1]


def test_prepare_rollout_rows_carry_base_and_modulated_advantages(make_cfg, datamodule):
    module = _module(make_cfg, "algo=empg")
    module._trainer = SimpleNamespace(datamodule=datamodule, world_size=1, global_rank=0)
    rollout = synthetic_rollout(4, 2, 3, len(module.tokenizer), seed=4)
    rows = module.prepare_rollout(rollout)
    assert len(rows) == len(rollout.steps)
    # the same numbers computed directly from the pure functions
    mask, entropy = torch.zeros(8, 4, dtype=torch.bool), torch.zeros(8, 4)
    for s in rollout.steps:
        mask[s.traj_id, s.step_idx], entropy[s.traj_id, s.step_idx] = True, s.step_entropy
    returns = torch.tensor([e.episode_return for e in rollout.episodes])
    base = grpo_advantages(returns, mask, torch.tensor([e.group_id for e in rollout.episodes]))
    modulated = empg_advantages(base, entropy, mask)
    for s, row in zip(rollout.steps, rows):
        assert row["base_advantage"] == pytest.approx(base[s.traj_id, s.step_idx].item(), abs=1e-6)
        assert row["advantage"] == pytest.approx(modulated[s.traj_id, s.step_idx].item(), abs=1e-6)
        assert row["step_entropy"] == pytest.approx(s.step_entropy)
    assert module._rollout_metrics["empg/g_mean"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("override, message", [
    ("algo.loss_agg=sum", "algo.loss_agg='sum' is not allowed; allowed values: token-mean"),
    ("algo.kl_type=k9", "algo.kl_type='k9' is not allowed; allowed values: k1, k3, low-var"),
    ("algo.estimator.name=vtrace", "algo.estimator.name='vtrace' is not a known estimator; allowed values: grpo"),
    ("algo.dual_clip=0.5", "algo.dual_clip must be null or > 1"),
    ("algo.ppo_epochs=0", "algo.ppo_epochs must be >= 1"),
    ("algo.recompute_old_logprobs=sometimes", "algo.recompute_old_logprobs='sometimes' is not allowed; allowed values: "
     "auto, true, false"),
])
def test_bad_algo_settings_name_the_key(make_cfg, override, message):
    with pytest.raises(Exception) as err:
        _module(make_cfg, override)
    assert message in str(err.value) or message in str(err.value.__cause__)


def test_length_grouped_batches_visit_every_row_once_per_pass():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10, 11]
    sampler = LengthGroupedBatches(lengths, batch_size=2, passes=3, seed=0, group=2)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert all(1 <= len(b) <= 2 for b in batches)
    counts = Counter(i for b in batches for i in b)
    assert counts == {i: 3 for i in range(len(lengths))}


def test_ppo_epochs_multiply_the_optimisation_steps(make_cfg):
    cfg = make_cfg("algo=empg", "algo.filter_groups=false", "algo.ppo_epochs=3", "task.mini_batch_size=2")
    datamodule, module = hydra.utils.instantiate(cfg.task), hydra.utils.instantiate(cfg.model)
    trainer = Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0)
    trainer.fit(module, datamodule)
    rows = len(trainer.train_dataloader.dataset)
    # 3 passes over the rollout's rows in mini-batches of 2: at least 3 * ceil(rows / 2) steps (more
    # when a mega-batch's remainder leaves a short mini-batch); the batch count depends only on rows
    expected = len(LengthGroupedBatches([1] * rows, batch_size=2, passes=3))
    assert trainer.global_step == expected and expected >= 3 * -(-rows // 2)


class FirstUpdateRatio(Callback):
    """Before the first optimisation step: the loss's own log-probs of the first mini-batch minus the
    old log-probs the rows carry (max |d| over real tokens); the ratio is exp(d)."""

    def __init__(self):
        self.max_abs_log_ratio = None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.max_abs_log_ratio is None:
            with torch.no_grad():
                logits = response_logits(module.model, batch)
                lp = token_log_probs(logits, batch["targets"], float(module.hparams.temperature))
            d = (lp - batch["old_log_probs"])[batch["response_mask"]]
            self.max_abs_log_ratio = d.abs().max().item()


def _first_update_log_ratio(make_cfg, dtype, *overrides):
    cfg = make_cfg("algo=grpo", "algo.filter_groups=false", "task.mini_batch_size=4", *overrides)
    datamodule, module = hydra.utils.instantiate(cfg.task), hydra.utils.instantiate(cfg.model)
    module.model.to(dtype)
    probe = FirstUpdateRatio()
    trainer = Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
                      callbacks=[probe])
    trainer.fit(module, datamodule)
    return probe.max_abs_log_ratio, module


def test_recomputed_old_log_probs_make_the_first_bf16_update_ratio_exactly_one(make_cfg):
    # auto recomputes for a bf16 policy: the trainer's forward pass in the loss's own mini-batches
    d, module = _first_update_log_ratio(make_cfg, torch.bfloat16)
    assert module.recomputes_old_log_probs()
    assert d == 0.0
    # without the recompute the sampler's KV-cached bf16 log-probs are off (what the switch fixes)
    d_sampled, module = _first_update_log_ratio(make_cfg, torch.bfloat16, "algo.recompute_old_logprobs=false")
    assert not module.recomputes_old_log_probs()
    assert d_sampled > 1e-4  # measured: above 1e-3 on one CPU, 9.8e-4 on another; exact 0 with the recompute


def test_fp32_policy_keeps_the_sampled_log_probs_by_default(make_cfg):
    module = _module(make_cfg)
    assert not module.recomputes_old_log_probs()
    assert _module(make_cfg, "algo.recompute_old_logprobs=true").recomputes_old_log_probs()
