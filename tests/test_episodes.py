"""The episode inspector: recorded episodes (schema, the advantages the loss used), the HTML page
for a smoke run of every task, TensorBoard text, and recording off costs nothing."""
import html
import json
import math
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import src.callbacks.episode_recorder as recorder
from src.callbacks.episode_recorder import EPISODE_FIELDS, STEP_FIELDS
from src.episodes import main as episodes_main
from src.episodes import render
from src.models.agent_module import AgentLitModule
from src.train import train
from conftest import FAST_OVERRIDES, compose_cfg

CONFIGS = Path(__file__).parents[1] / "configs"
TASKS = sorted(p.stem for p in (CONFIGS / "task").glob("*.yaml"))
#: no group filter: the smoke agent fails every episode, and filtered groups leave nothing to record;
#: shorter ALFWorld episodes (the loop is the same at any length)
OVERRIDES = {"alfworld": ["task.env.max_steps=10"]}
ADVANTAGE_KEYS = ("base_advantage", "g", "f", "advantage")


@pytest.fixture(scope="module", params=TASKS)
def recorded(request, tmp_path_factory, artifact_dir):
    """One smoke run per task with every episode recorded, and what the loss trained on: the
    rollout and the training rows ``prepare_rollout`` returned."""
    task = request.param
    out = tmp_path_factory.mktemp(f"episodes_{task}")
    cfg = compose_cfg("train.yaml", FAST_OVERRIDES + [f"task={task}", "algo=empg", "algo.filter_groups=false",
                                                      "record_episodes=-1", *OVERRIDES.get(task, [])], out, artifact_dir)
    prepared = []
    original = AgentLitModule.prepare_rollout

    def spy(self, rollout, played_metrics=None):
        rows = original(self, rollout, played_metrics)
        prepared.append((rollout, rows, list(self.last_step_advantages)))
        return rows

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AgentLitModule, "prepare_rollout", spy)
        train(cfg)
    return {"task": task, "dir": out, "cfg": cfg, "prepared": prepared}


def _events(run_dir: Path) -> EventAccumulator:
    """The run's TensorBoard events (the folder's event files, read in order)."""
    folder, = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents*")}
    return EventAccumulator(str(folder), size_guidance={"tensors": 0}).Reload()


def _read(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_episode_files_follow_the_schema(recorded):
    cfg, folder = recorded["cfg"], recorded["dir"] / "episodes"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0_val.jsonl", "epoch_1_train.jsonl", "epoch_1_val.jsonl"]
    val0, val1 = _read(folder / "epoch_0_val.jsonl"), _read(folder / "epoch_1_val.jsonl")
    train_eps = _read(folder / "epoch_1_train.jsonl")
    assert len(val0) == len(val1) == cfg.task.val_episodes
    assert len(train_eps) == cfg.task.groups * cfg.task.group_size  # record_episodes=-1: all
    # validation plays the same tasks in the same order every epoch, so epochs compare
    assert [e["task_id"] for e in val0] == [e["task_id"] for e in val1]
    for episode in val0 + val1 + train_eps:
        assert tuple(episode) == EPISODE_FIELDS
        assert episode["env"] == recorded["task"] and episode["split"] in ("train", "val")
        assert episode["length"] == len(episode["steps"]) >= 1
        assert [s["step"] for s in episode["steps"]] == list(range(episode["length"]))
        assert math.isfinite(episode["return"]) and all(math.isfinite(v) for v in episode["metrics"].values())
        if recorded["task"] != "webshop":  # ALFWorld's task type, Deep Search's family; WebShop has none
            assert episode["task_type"]
        for step in episode["steps"]:
            assert tuple(step) == STEP_FIELDS
            n = len(step["tokens"])
            assert n >= 1 and len(step["token_entropies"]) == len(step["token_log_probs"]) == n
            numbers = [step["reward"], step["penalty"], step["entropy"], *step["token_entropies"],
                       *step["token_log_probs"]]
            assert all(isinstance(x, float) and math.isfinite(x) for x in numbers)
            assert step["entropy"] == pytest.approx(sum(step["token_entropies"]) / n)
            # the prompt holds the observation; WebShop's tiny tokenizer is uncased, so the prompt as
            # the model read it is lowercase
            assert step["anchor_obs"].strip()[:40].lower() in step["observation"].lower()
            advantages = [step[k] for k in ADVANTAGE_KEYS]
            if episode["split"] == "val":
                assert advantages == [None] * 4
            else:  # EMPG is on: all four, finite
                assert all(isinstance(x, float) and math.isfinite(x) for x in advantages)


def test_recorded_advantages_are_the_ones_the_loss_used(recorded):
    (rollout, rows, advantages), = recorded["prepared"]  # one training epoch
    # the training rows (what the loss batches) per (trajectory, step)
    used = {(s.traj_id, s.step_idx): (row, adv) for s, row, adv in zip(rollout.steps, rows, advantages)}
    records = _read(recorded["dir"] / "episodes" / "epoch_1_train.jsonl")
    assert sum(len(e["steps"]) for e in records) == len(rows)
    # who played each episode (debug=smoke has the expert play one member of every group)
    assert [e["expert"] for e in records] == [e.expert for e in rollout.episodes]
    assert any(e["expert"] for e in records) == (recorded["cfg"].task.expert_guidance > 0)
    for episode in records:
        for step in episode["steps"]:
            row, adv = used[(episode["traj_id"], step["step"])]
            assert step["advantage"] == row["advantage"] == adv.advantage
            assert step["base_advantage"] == row["base_advantage"] == adv.base
            assert (step["g"], step["f"]) == (adv.g, adv.f)
            assert step["entropy"] == pytest.approx(row["step_entropy"])
            assert step["token_log_probs"] == row["old_log_probs"]


def test_html_renders_every_recorded_episode(recorded):
    page = render(recorded["dir"])
    assert page == recorded["dir"] / "episodes.html"
    text = page.read_text()
    for path in sorted((recorded["dir"] / "episodes").glob("*.jsonl")):
        epoch, split = path.stem.split("_")[1:]
        for i, episode in enumerate(_read(path)):
            assert f'id="e{epoch}-{split}-{i}"' in text
            assert html.escape(str(episode["task_id"])) in text
            assert html.escape(episode["steps"][0]["action"]) in text
    # validation tasks side by side, first (0) and last (1) epoch
    assert text.count('class="view compare"') == recorded["cfg"].task.val_episodes
    # self-contained: nothing fetched from elsewhere
    assert "http://" not in text and "https://" not in text and "<link" not in text


def test_tensorboard_gets_episodes_as_text(recorded):
    events = _events(recorded["dir"])
    tags = events.Tags()["tensors"]
    assert "episodes/val/text_summary" in tags and "episodes/train/text_summary" in tags
    text = events.Tensors("episodes/train/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.count("**epoch 1 · train") == 2  # tensorboard_episodes


def test_recording_off_writes_nothing_and_does_no_work(make_cfg, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("record_episodes=0 built episode records")

    monkeypatch.setattr(recorder, "episode_records", fail)
    cfg = make_cfg("record_episodes=0", "algo.filter_groups=false")
    assert cfg.callbacks.episode_recorder.num_episodes == 0
    train(cfg)
    assert not (tmp_path / "episodes").exists()
    events = _events(tmp_path)
    assert not any(t.startswith("episodes/") for t in events.Tags()["tensors"])


def test_renderer_without_episodes_exits_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        episodes_main([str(tmp_path)])
    assert exit_info.value.code == 1
    assert "no recorded episodes" in capsys.readouterr().err
