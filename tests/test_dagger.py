"""DAgger after the warm start (model.warmstart.dagger_rounds): the sampler labels the states the policy
reaches with the expert's response there, the data module turns them into rows, and each round is cached
under a key chained from the one before, so a cached chain replays without playing an episode."""
import hydra
import pytest
import torch

from envs import make_env
from src.models.warmstart import cached_dagger_round, cached_warm_start
from src.policy.model import build_tiny_policy

SMALL = dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1)


@pytest.fixture
def alfworld(make_cfg):
    cfg = make_cfg("task=alfworld", "model.warmstart.enabled=false")
    datamodule = hydra.utils.instantiate(cfg.task)
    datamodule.setup("fit")
    return cfg, datamodule, hydra.utils.instantiate(cfg.model.policy)


def test_labels_are_the_experts_response_in_the_state_the_policy_reached(alfworld):
    cfg, datamodule, policy = alfworld
    rows, success = datamodule.dagger_rows(policy, 2, seed=3)
    result = datamodule.sampler.play(policy, datamodule.train_envs[:1], [{"options": {"index": 5}}], [0],
                                     generator=torch.Generator().manual_seed(0), label=True)
    assert success == 0.0 and len(rows) == 2 * 50  # an untrained policy fails every episode, to the cap
    # replay the policy's own moves on a fresh env: before each, the expert answers what the label says
    env = make_env("alfworld", split="train", **cfg.task.env)
    env.reset(options={"index": 5})
    for step in result.steps:
        assert step.expert_label == env.expert_response() and step.expert_label.startswith("<think>")
        env.step(step.response_text)
    unlabelled = datamodule.sampler.play(policy, datamodule.train_envs[:1], [{"options": {"index": 5}}], [0],
                                         generator=torch.Generator().manual_seed(0))
    assert [s.response_ids for s in unlabelled.steps] == [s.response_ids for s in result.steps]
    assert all(s.expert_label == "" for s in unlabelled.steps)
    eos = policy.tokenizer.eos_token_id
    assert all(r["response_ids"][-1] == eos and len(r["response_ids"]) > 3 for r in rows)


def test_a_cached_dagger_chain_replays_without_playing(tmp_path, alfworld):
    _, datamodule, _ = alfworld
    pairs, _ = datamodule.expert_demonstrations(build_tiny_policy(str(tmp_path / "b"), **SMALL), 4)
    calls = []

    def run(collect):
        policy = build_tiny_policy(str(tmp_path / "build"), **SMALL)
        key = cached_warm_start(policy, pairs, cache_dir=str(tmp_path / "cache"), steps=2, batch_size=8,
                                lr=3e-3, seed=0).key
        labelled = []
        for round_index in range(2):
            done, labelled = cached_dagger_round(policy, key, pairs, labelled, collect, settings={"round": round_index},
                                                 cache_dir=str(tmp_path / "cache"), steps=2, batch_size=8, lr=3e-3,
                                                 seed=round_index)
            key = done.key
        return policy, labelled, key

    def collect():
        calls.append(1)
        prompt = list(range(10, 30 + len(calls)))
        return [{"prompt_ids": prompt, "response_ids": [7, 8, 9]}], 0.0

    first, labelled, key = run(collect)
    assert len(calls) == 2 and len(labelled) == 2  # rows aggregate over rounds

    def must_not_play():
        raise AssertionError("a cached round played episodes")

    again, labelled_again, key_again = run(must_not_play)
    assert key_again == key and labelled_again == labelled
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
