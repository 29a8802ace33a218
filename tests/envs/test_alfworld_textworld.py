"""The simulator against the real engine (TextWorld + ALFWorld's PDDL domain) on exported simulator games.

Needs the ``alfworld`` extra (``pip install -e ".[alfworld]"``); skipped without it. Slow: loading a game
takes about a second and every engine step tens of milliseconds.

What matches exactly on the expert's trajectories of all six task types: the reset observation, every
feedback text up to the order of the objects listed inside a receptacle, ``won`` at every step, the
rewards and metrics of ``AlfWorldEnv``, the held object's ``examine`` text, and the admissible commands except
that the engine does not list ``examine <object>`` for objects lying in a receptacle (it does for the held
object). ``test_known_differences`` pins the rest (help text, lamps); envs/alfworld/README.md lists them all.
"""
import os
import re
import sys

import pytest

pytest.importorskip("textworld")
pytest.importorskip("alfworld")

from envs.alfworld import AlfWorldEnv  # noqa: E402
from envs.alfworld.engine import NOTHING_HAPPENS, Household  # noqa: E402
from envs.alfworld.textworld_backend import (TextWorldGame, TextWorldHousehold, export_games,  # noqa: E402
                                             export_problem)
from envs.alfworld.world import TASK_TYPES, generate_game  # noqa: E402

pytestmark = pytest.mark.slow

_LIST = re.compile(r"you see (.*)\.$")
_MOVE = re.compile(r"<action>move (.+?) to (.+?)</action>")


def _games():
    """The first two train games of each task type."""
    out = {t: [] for t in TASK_TYPES}
    i = 0
    while any(len(v) < 2 for v in out.values()):
        g = generate_game("train", i)
        if len(out[g.task_type]) < 2:
            out[g.task_type].append(g)
        i += 1
    return [g for t in TASK_TYPES for g in out[t]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    games = _games()
    root = str(tmp_path_factory.mktemp("tw_games"))
    return root, games, export_games(games, root)


def _unordered(text: str):
    """The feedback with the listed items as a sorted list (the engine orders a receptacle's contents its own way)."""
    m = _LIST.search(text)
    if not m:
        return text, None
    items = m.group(1).replace(", and ", ", ").split(", ")
    return text[:m.start()], sorted(items)


def _in_receptacle_examines(h: Household):
    return {f"examine {t.name}" for t in h.things.values() if t.location is not None}


def test_export_problem_is_alfred_pddl():
    g = _games()[0]
    problem, names = export_problem(g.to_dict())
    assert "(:domain alfred)" in problem and "(:goal (exists" in problem
    assert sorted(names.values()) == sorted([n for n, _ in g.receptacles] + [o.name for o in g.objects])
    assert all("_bar_" in i for i in names)


@pytest.mark.parametrize("k", range(12))
def test_expert_trajectory_matches_real_engine(exported, k):
    _, games, paths = exported
    game, path = games[k], paths[k]
    tw = TextWorldGame(path)
    h = Household(game)
    obs, admissible, won = tw.reset()
    assert obs == h.initial_observation()
    assert admissible == h.admissible_commands()  # nothing visible inside a receptacle yet
    assert not won
    assert tw.walkthrough and tw.task_type == game.task_type and tw.goal == game.goal
    for cmd in tw.walkthrough + ["inventory", "look", "examine nothing 1"]:
        sim_obs, valid = h.execute(cmd)
        tw_obs, tw_adm, tw_won = tw.step(cmd)
        assert valid == (tw_obs != NOTHING_HAPPENS)
        assert _unordered(tw_obs) == _unordered(sim_obs), cmd
        listed = _unordered(tw_obs)[1]
        if listed and listed != ["nothing"]:  # engine order: sorted ids = types alphabetically, numbers descending
            names = [item[2:] for item in _LIST.search(tw_obs).group(1).replace(", and ", ", ").split(", ")]
            assert names == sorted(names, key=lambda n: (n.rsplit(" ", 1)[0], -int(n.rsplit(" ", 1)[1]))), tw_obs
        assert tw_won == h.won(), cmd
        sim_adm = h.admissible_commands()
        # the engine lists the same commands, less `examine X` for objects in a receptacle, in the same order
        assert set(tw_adm) <= set(sim_adm)
        assert set(sim_adm) - set(tw_adm) <= _in_receptacle_examines(h)
        assert tw_adm == [c for c in sim_adm if c in set(tw_adm)]
        if h.holding is not None:  # the held object's state text ("This is a hot cup 1.")
            examine = f"examine {h.holding}"
            assert tw.step(examine)[0] == h.execute(examine)[0]
    assert tw.won


def test_known_differences(exported):
    """What the README lists as different: help text, lamps (examine, switching off)."""
    _, games, paths = exported
    k = next(i for i, g in enumerate(games) if g.task_type == "look")
    tw, h = TextWorldGame(paths[k]), Household(games[k])
    tw.reset()
    tw_help, sim_help = tw.step("help")[0], h.execute("help")[0]
    assert tw_help != sim_help
    assert tw_help.replace("  move (object) to (receptacle):  place", "  move (object) to (receptacle):    place") == (
        sim_help + "\n  slice (object) with (object):     slice an object using a sharp object\n")
    for cmd in tw.walkthrough:
        tw.step(cmd)
        h.execute(cmd)
    lamp = tw.walkthrough[-1].split(" ", 1)[1]
    assert tw.won and h.won()
    assert tw.step(f"examine {lamp}")[0] == NOTHING_HAPPENS  # not admissible: it stands in a receptacle
    assert h.execute(f"examine {lamp}")[0] == f"This {lamp} is on."
    # a second `use`: the engine's lamp stays toggled (isToggled) and the game stays won; the simulator's goes off
    assert tw.step(f"use {lamp}")[0] == f"You turn on the {lamp}." and tw.won
    assert h.execute(f"use {lamp}")[0] == f"You turn off the {lamp}." and not h.won()


def test_env_backend_textworld_same_protocol(exported):
    root, games, paths = exported
    tw_env = AlfWorldEnv(split="train", backend="textworld", games_dir=root, accept_put_alias=True)
    assert tw_env.num_tasks() == len(games)
    sim_env = AlfWorldEnv(split="train", accept_put_alias=True)
    for k in (0, 6):  # a pick and a heat game
        tw_obs, tw_info = tw_env.reset(options={"index": tw_env.game_files.index(paths[k])})
        sim_obs, sim_info = sim_env.reset(options={"game": games[k]})
        assert tw_obs == sim_obs and tw_info["task_type"] == sim_info["task_type"] == games[k].task_type
        assert tw_info["instruction"] == sim_info["instruction"]
        # a malformed step (no <think>) and a non-admissible one first: same feedback, rewards and penalties
        bad = tw_env.step("<action>fly to the moon</action>")
        assert bad[:4] == sim_env.step("<action>fly to the moon</action>")[:4]
        assert bad[4]["action_valid"] is False and bad[4]["penalty"] == pytest.approx(0.1) and bad[1] == 0.0
        wrong = tw_env.step("<think>x</think><action>take the moon</action>")
        assert wrong[:4] == sim_env.step("<think>x</think><action>take the moon</action>")[:4]
        assert wrong[0] == NOTHING_HAPPENS and wrong[4]["action_valid"] and wrong[4]["penalty"] == 0.0
        while True:
            response = sim_env.expert_response()
            assert tw_env.expert_command() in response
            t = tw_env.step(_MOVE.sub(r"<action>put \1 in/on \2</action>", response))  # the put alias too
            s = sim_env.step(response)
            assert t[1:4] == s[1:4]
            assert t[4]["action_valid"] and t[4]["action"] == s[4]["action"]
            assert "admissible_actions" in t[4]
            if t[2] or t[3]:
                assert t[4]["won"] and t[4]["metrics"] == s[4]["metrics"]
                assert t[4]["metrics"]["inadmissible_actions"] == 1.0 and t[4]["metrics"]["invalid_actions"] == 1.0
                assert t[1] == pytest.approx(10.0)
                break


def test_textworld_household_rejects_without_engine_step(exported):
    _, _, paths = exported
    h = TextWorldHousehold(TextWorldGame(paths[0]))
    assert h.execute("take the moon") == (NOTHING_HAPPENS, False)
    assert h.history == [] and not h.won()


def test_errors_without_alfworld_data(monkeypatch, tmp_path):
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="ALFWORLD_DATA") as err:
        AlfWorldEnv(split="valid_seen", backend="textworld")
    assert "alfworld-download" in str(err.value) and "json_2.1.1" in str(err.value)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))  # set, but no games for the split
    with pytest.raises(FileNotFoundError, match="alfworld-download") as err:
        AlfWorldEnv(split="valid_seen", backend="textworld")
    assert os.path.join(str(tmp_path), "json_2.1.1", "valid_seen") in str(err.value)
    with pytest.raises(ValueError, match="backend"):
        AlfWorldEnv(backend="unreal")


def test_error_without_alfworld_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "alfworld", None)  # `import alfworld` raises ImportError
    with pytest.raises(ImportError, match=r'pip install -e "\.\[alfworld\]"'):
        AlfWorldEnv(split="train", backend="textworld", games_dir=str(tmp_path))


def test_textworld_engine_runs_on_the_env_guard_thread(exported):
    # training steps environments on EnvGuard's worker thread (task.env_step_timeout_s): the real engine
    # must work off the main thread
    from src.rollout.env_guard import EnvGuard

    root, games, paths = exported
    env = AlfWorldEnv(split="train", backend="textworld", games_dir=root)
    guard = EnvGuard(timeout_s=120)
    answer, error = guard(env.reset, options={"index": 0})
    assert error is None and answer[0].startswith("-= Welcome to TextWorld, ALFRED! =-")
    answer, error = guard(env.step, env.expert_response())
    assert error is None and answer[4]["action_valid"] and answer[0] != NOTHING_HAPPENS
