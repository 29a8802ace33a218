"""Tests of the simulated ALFWorld task: hand-made transcripts of all six task types, the expert,
splits and their calibration on the real game, determinism, verl-agent's action projection and the
two invalid-action rules, the env under fuzzing, the step cap and the report."""
import dataclasses
import random
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import envs
from envs.alfworld import AlfWorldEnv
from envs.alfworld.engine import HELP_TEXT, NOTHING_HAPPENS, WELCOME, Household, join_items
from envs.alfworld.env import INSTRUCTION, project_action
from envs.alfworld.expert import SEARCH_TYPES, expert_step, search_order
from envs.alfworld.world import (DEFAULT_SPLIT_SIZES, LAMPS, LAYOUTS_PER_ROOM, OPENABLE, ROOMS, SPLITS, TASK_COUNTS,
                                 TASK_TYPES, UNSEEN_LAYOUT_ID, UNSEEN_SCENES, GameSpec, ObjectSpec, all_combos,
                                 can_contain, generate_game, held_out_combos, is_held_out_combo, is_unseen_layout,
                                 room_layouts, vocabulary)

PENALTY = 0.1
KITCHEN = [("cabinet 2", "cabinet"), ("cabinet 1", "cabinet"), ("countertop 1", "countertop"),
           ("fridge 1", "fridge"), ("microwave 1", "microwave"), ("sinkbasin 1", "sinkbasin")]
KITCHEN_INTRO = ("You are in the middle of a room. Looking quickly around you, you see a cabinet 2, a cabinet 1, "
                 "a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.")


def game(task, obj, target, goal, receptacles, objects, room="kitchen"):
    return GameSpec(split="train", index=-1, world_seed=0, room=room, layout_id=-1, receptacles=receptacles,
                    objects=[ObjectSpec(n, n.rsplit(" ", 1)[0], loc, lamp) for n, loc, lamp in objects],
                    task_type=task, obj_type=obj, target_type=target, goal=goal, task_id=f"hand/{task}")


def act(command):
    return f"<think>ok</think><action>{command}</action>"


def play(env, spec, transcript):
    """Reset on ``spec`` and check each (command, expected feedback, reward) step; returns the last info.
    Every step is well-formed, so none is invalid or penalised (admitted by the game or not)."""
    obs, info = env.reset(options={"game": spec})
    info = None
    for i, (command, feedback, reward) in enumerate(transcript):
        obs, r, terminated, truncated, info = env.step(act(command))
        assert obs == feedback, (i, command, obs)
        assert r == pytest.approx(reward), (i, command, r)
        assert info["action_valid"] and info["penalty"] == 0.0, (i, command)
        last = i == len(transcript) - 1
        assert terminated == (last and reward == 10.0), (i, command)
        assert not truncated
    return info


@pytest.fixture
def env():
    return AlfWorldEnv(split="train", seed=0, invalid_action_penalty=PENALTY)


# ---------------------------------------------------------------------- hand-made games, one per task type
def test_pick_and_place_transcript(env):
    spec = game("pick", "mug", "countertop", "put a mug in countertop", KITCHEN,
                [("mug 1", "cabinet 1", False), ("apple 1", "countertop 1", False)])
    obs, info = env.reset(options={"game": spec})
    assert obs == f"{WELCOME}\n\n{KITCHEN_INTRO}\n\nYour task is to: put a mug in countertop."
    assert info["instruction"] == INSTRUCTION.format(goal="put a mug in countertop")
    assert "Your task is to: put a mug in countertop." in info["instruction"]
    assert info["admissible_actions"] == [  # the game's list less `help`, as verl-agent shows it
        "go to cabinet 1", "go to cabinet 2", "go to countertop 1", "go to fridge 1", "go to microwave 1",
        "go to sinkbasin 1", "inventory", "look"]
    assert env.house.admissible_commands() == sorted(info["admissible_actions"] + ["help"])
    info = play(env, spec, [
        ("look", "You are in the middle of a room. Looking quickly around you, you see nothing.", 0.0),
        ("inventory", "You are not carrying anything.", 0.0),
        ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed.", 0.0),
        ("take mug 1 from cabinet 1", NOTHING_HAPPENS, 0.0),  # closed: not admissible, a valid step
        ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a mug 1.", 0.0),
        ("take mug 1 from cabinet 1", "You pick up the mug 1 from the cabinet 1.", 0.0),
        ("inventory", "You are carrying: a mug 1.", 0.0),
        ("examine mug 1", "There's nothing special about mug 1.", 0.0),
        ("look", "You are facing the cabinet 1. Next to it, you see nothing.", 0.0),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a apple 1.", 0.0),
        ("take apple 1 from countertop 1", NOTHING_HAPPENS, 0.0),  # hands full
        ("put mug 1 in/on countertop 1", NOTHING_HAPPENS, 0.0),  # the pre-0.4 syntax: ALFWorld 0.4 ignores it
        ("move mug 1 to countertop 1", "You move the mug 1 to the countertop 1.", 10.0),
    ])
    assert info["won"] and info["success"] and info["action"] == "move mug 1 to countertop 1"
    assert info["metrics"] == {"success": 1.0, "success_pick": 1.0, "num_steps": 13.0, "invalid_actions": 0.0,
                               "valid_action_ratio": 1.0, "inadmissible_actions": 3.0}


def test_admissible_list_at_a_receptacle(env):
    spec = game("pick", "mug", "countertop", "put a mug in countertop", KITCHEN,
                [("mug 1", "cabinet 1", False), ("cup 1", "cabinet 1", False), ("apple 1", "countertop 1", False)])
    env.reset(options={"game": spec})
    env.step(act("go to cabinet 1"))
    _, _, _, _, info = env.step(act("open cabinet 1"))
    assert info["admissible_actions"] == [
        "close cabinet 1", "examine cabinet 1", "examine cup 1", "examine mug 1", "go to cabinet 2",
        "go to countertop 1", "go to fridge 1", "go to microwave 1", "go to sinkbasin 1", "inventory",
        "look", "take cup 1 from cabinet 1", "take mug 1 from cabinet 1"]
    _, _, _, _, info = env.step(act("take cup 1 from cabinet 1"))
    assert "move cup 1 to cabinet 1" in info["admissible_actions"] and "examine cup 1" in info["admissible_actions"]
    assert not any(a.startswith("take ") for a in info["admissible_actions"])
    obs, _, _, _, info = env.step(act("close cabinet 1"))
    assert obs == "You close the cabinet 1." and "examine mug 1" not in info["admissible_actions"]
    assert env.step(act("examine cabinet 1"))[0] == "The cabinet 1 is closed."
    assert env.step(act("help"))[0] == HELP_TEXT  # not shown, still answered
    # the pre-0.4 syntax as an option: `put X in/on Y` read as `move X to Y`
    lenient = AlfWorldEnv(accept_put_alias=True)
    lenient.reset(options={"game": spec})
    for c in ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1", "go to countertop 1"):
        lenient.step(act(c))
    obs, reward, terminated, _, info = lenient.step(act("put mug 1 in/on countertop 1"))
    assert obs == "You move the mug 1 to the countertop 1." and reward == 10.0 and terminated
    assert info["action"] == "move mug 1 to countertop 1"


def test_heat_transcript(env):
    spec = game("heat", "egg", "countertop", "heat some egg and put it in countertop", KITCHEN,
                [("egg 1", "fridge 1", False), ("mug 1", "microwave 1", False)])
    info = play(env, spec, [
        ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed.", 0.0),
        ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see a egg 1.", 0.0),
        ("take egg 1 from fridge 1", "You pick up the egg 1 from the fridge 1.", 0.0),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see nothing.", 0.0),
        ("heat egg 1 with microwave 1", NOTHING_HAPPENS, 0.0),  # not at the microwave
        ("move egg 1 to countertop 1", "You move the egg 1 to the countertop 1.", 0.0),  # not hot yet
        ("take egg 1 from countertop 1", "You pick up the egg 1 from the countertop 1.", 0.0),
        ("go to microwave 1", "You arrive at microwave 1. The microwave 1 is closed.", 0.0),
        ("heat egg 1 with microwave 1", "You heat the egg 1 using the microwave 1.", 0.0),  # closed is fine
        ("examine egg 1", "This is a hot egg 1.", 0.0),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see nothing.", 0.0),
        ("move egg 1 to countertop 1", "You move the egg 1 to the countertop 1.", 10.0),
    ])
    assert info["won"] and info["metrics"]["success_heat"] == 1.0 and "success_pick" not in info["metrics"]


def test_cool_transcript(env):
    spec = game("cool", "tomato", "countertop", "put a cool tomato in countertop", KITCHEN,
                [("tomato 1", "sinkbasin 1", False), ("apple 1", "sinkbasin 1", False)])
    info = play(env, spec, [
        ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see a tomato 1, and a apple 1.", 0.0),
        ("take tomato 1 from sinkbasin 1", "You pick up the tomato 1 from the sinkbasin 1.", 0.0),
        ("cool tomato 1 with sinkbasin 1", NOTHING_HAPPENS, 0.0),
        ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed.", 0.0),
        ("cool tomato 1 with fridge 1", "You cool the tomato 1 using the fridge 1.", 0.0),
        ("examine tomato 1", "This is a cold tomato 1.", 0.0),
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see nothing.", 0.0),
        ("move tomato 1 to countertop 1", "You move the tomato 1 to the countertop 1.", 10.0),
    ])
    assert info["metrics"]["success_cool"] == 1.0


def test_clean_transcript(env):
    spec = game("clean", "plate", "cabinet", "put a clean plate in cabinet", KITCHEN,
                [("plate 1", "countertop 1", False)])
    info = play(env, spec, [
        ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a plate 1.", 0.0),
        ("take plate 1 from countertop 1", "You pick up the plate 1 from the countertop 1.", 0.0),
        ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed.", 0.0),
        ("move plate 1 to cabinet 1", NOTHING_HAPPENS, 0.0),  # closed
        ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see nothing.", 0.0),
        ("move plate 1 to cabinet 1", "You move the plate 1 to the cabinet 1.", 0.0),  # dirty: no win
        ("take plate 1 from cabinet 1", "You pick up the plate 1 from the cabinet 1.", 0.0),
        ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing.", 0.0),
        ("clean plate 1 with sinkbasin 1", "You clean the plate 1 using the sinkbasin 1.", 0.0),
        ("examine plate 1", "This is a clean plate 1.", 0.0),
        ("go to cabinet 2", "You arrive at cabinet 2. The cabinet 2 is closed.", 0.0),
        ("open cabinet 2", "You open the cabinet 2. The cabinet 2 is open. In it, you see nothing.", 0.0),
        ("move plate 1 to cabinet 2", "You move the plate 1 to the cabinet 2.", 10.0),  # any cabinet
    ])
    assert info["metrics"]["success_clean"] == 1.0


BEDROOM = [("bed 1", "bed"), ("desk 1", "desk"), ("drawer 2", "drawer"), ("drawer 1", "drawer"),
           ("sidetable 1", "sidetable")]


def test_look_transcript(env):
    spec = game("look", "book", "desklamp", "look at book under the desklamp", BEDROOM,
                [("book 1", "bed 1", False), ("desklamp 1", "sidetable 1", True), ("pen 1", "sidetable 1", False)],
                room="bedroom")
    obs, info = env.reset(options={"game": spec})
    assert "you see a bed 1, a desk 1, a drawer 2, a drawer 1, and a sidetable 1." in obs
    info = play(env, spec, [
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see a desklamp 1, and a pen 1.", 0.0),
        ("take desklamp 1 from sidetable 1", NOTHING_HAPPENS, 0.0),  # lamps stay where they stand
        ("use desklamp 1", "You turn on the desklamp 1.", 0.0),  # not holding the book yet
        ("examine desklamp 1", "This desklamp 1 is on.", 0.0),
        ("use desklamp 1", "You turn off the desklamp 1.", 0.0),
        ("go to bed 1", "You arrive at bed 1. On the bed 1, you see a book 1.", 0.0),
        ("take book 1 from bed 1", "You pick up the book 1 from the bed 1.", 0.0),
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see a desklamp 1, and a pen 1.", 0.0),
        ("use desklamp 1", "You turn on the desklamp 1.", 10.0),
    ])
    assert info["metrics"]["success_look"] == 1.0


def test_pick_two_transcript(env):
    room = [("coffeetable 1", "coffeetable"), ("garbagecan 1", "garbagecan"), ("sidetable 1", "sidetable"),
            ("sofa 1", "sofa")]
    spec = game("pick2", "keychain", "sofa", "find two keychain and put them in sofa", room,
                [("keychain 2", "coffeetable 1", False), ("keychain 1", "sidetable 1", False)], room="livingroom")
    info = play(env, spec, [
        ("go to coffeetable 1", "You arrive at coffeetable 1. On the coffeetable 1, you see a keychain 2.", 0.0),
        ("take keychain 2 from coffeetable 1", "You pick up the keychain 2 from the coffeetable 1.", 0.0),
        ("go to sofa 1", "You arrive at sofa 1. On the sofa 1, you see nothing.", 0.0),
        ("move keychain 2 to sofa 1", "You move the keychain 2 to the sofa 1.", 0.0),  # one is not enough
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see a keychain 1.", 0.0),
        ("take keychain 1 from sidetable 1", "You pick up the keychain 1 from the sidetable 1.", 0.0),
        ("go to sofa 1", "You arrive at sofa 1. On the sofa 1, you see a keychain 2.", 0.0),
        ("move keychain 1 to sofa 1", "You move the keychain 1 to the sofa 1.", 10.0),
    ])
    assert info["metrics"]["success_pick2"] == 1.0


def test_pick_two_needs_both_in_the_same_receptacle(env):
    """ALFWorld's pick_two goal: two distinct objects in one receptacle instance of the target type; one
    in each of two such receptacles does not win (the simulator used to count them)."""
    room = [("coffeetable 1", "coffeetable"), ("sidetable 2", "sidetable"), ("sidetable 1", "sidetable"),
            ("sofa 1", "sofa")]
    spec = game("pick2", "keychain", "sidetable", "put two keychain in sidetable", room,
                [("keychain 2", "coffeetable 1", False), ("keychain 1", "sofa 1", False)], room="livingroom")
    info = play(env, spec, [
        ("go to coffeetable 1", "You arrive at coffeetable 1. On the coffeetable 1, you see a keychain 2.", 0.0),
        ("take keychain 2 from coffeetable 1", "You pick up the keychain 2 from the coffeetable 1.", 0.0),
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see nothing.", 0.0),
        ("move keychain 2 to sidetable 1", "You move the keychain 2 to the sidetable 1.", 0.0),
        ("go to sofa 1", "You arrive at sofa 1. On the sofa 1, you see a keychain 1.", 0.0),
        ("take keychain 1 from sofa 1", "You pick up the keychain 1 from the sofa 1.", 0.0),
        ("go to sidetable 2", "You arrive at sidetable 2. On the sidetable 2, you see nothing.", 0.0),
        ("move keychain 1 to sidetable 2", "You move the keychain 1 to the sidetable 2.", 0.0),  # not together
        ("take keychain 1 from sidetable 2", "You pick up the keychain 1 from the sidetable 2.", 0.0),
        ("go to sidetable 1", "You arrive at sidetable 1. On the sidetable 1, you see a keychain 2.", 0.0),
        ("move keychain 1 to sidetable 1", "You move the keychain 1 to the sidetable 1.", 10.0),
    ])
    assert info["won"]
    # the omniscient expert brings the second one to the receptacle that holds the first; the exploring one
    # collects both in its goal receptacle, the lowest-numbered sidetable
    for expert, last in (("omniscient", "move keychain 1 to sidetable 2"), ("explore", "move keychain 1 to sidetable 1")):
        other = AlfWorldEnv(expert=expert)
        other.reset(options={"game": spec})
        for command in ("go to coffeetable 1", "take keychain 2 from coffeetable 1", "go to sidetable 2",
                        "move keychain 2 to sidetable 2"):
            other.step(act(command))
        while True:
            obs, reward, terminated, truncated, info = other.step(other.expert_response())
            if terminated or truncated:
                break
        assert info["won"] and info["action"] == last, expert


def test_join_items():
    assert join_items([]) == "nothing"
    assert join_items(["mug 1"]) == "a mug 1"
    assert join_items(["mug 1", "cup 2"]) == "a mug 1, and a cup 2"
    assert join_items(["a 1", "b 1", "c 1"]) == "a a 1, a b 1, and a c 1"


def test_game_spec_round_trips_through_json():
    import json
    spec = generate_game("train", 7)
    d = json.loads(json.dumps(spec.to_dict()))
    assert d["task_type_name"].startswith(("pick", "look"))
    assert {r["name"] for r in d["receptacles"]} == {n for n, _ in spec.receptacles}
    assert all(o["location"] in {r["name"] for r in d["receptacles"]} for o in d["objects"])


# ---------------------------------------------------------------------- expert
EXPERTS = ("explore", "omniscient")


def _play_expert(env, index, random_prefix=0, rng=None):
    obs, info = env.reset(options={"index": index})
    for _ in range(random_prefix):  # someone else's moves first: the expert must recover from any state
        cmd = rng.choice(info["admissible_actions"])
        obs, reward, terminated, truncated, info = env.step(act(cmd))
        assert info["action_valid"]
        if terminated or truncated:
            return info
    for _ in range(env.max_steps):
        before = list(info["admissible_actions"])
        response = env.expert_response()
        command, ok = project_action(response)
        assert ok and command in before, (index, response)
        obs, reward, terminated, truncated, info = env.step(response)
        assert info["action_valid"]
        if terminated or truncated:
            return info
    raise AssertionError("episode did not end")


@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("split", SPLITS)
def test_expert_solves_every_game(split, expert):
    """Both experts win the first 300 games of every split within the 50-step cap; the exploring one takes
    about ETO's 10.1 turns, the omniscient one far fewer."""
    env = AlfWorldEnv(split=split, num_games=300, expert=expert)
    lengths = []
    for i in range(300):
        info = _play_expert(env, i)
        assert info["won"] and info["success"] and info["metrics"]["success"] == 1.0, (split, i)
        assert info["metrics"][f"success_{env.game.task_type}"] == 1.0
        lengths.append(info["metrics"]["num_steps"])
    mean = sum(lengths) / len(lengths)
    if expert == "explore":
        assert 9.5 < mean < 12.5 and max(lengths) > 20
    else:
        assert 6.0 < mean < 7.0 and max(lengths) < 20


@pytest.mark.slow
def test_explore_expert_over_the_whole_train_split():
    """The exploring expert wins every train game; 7 of 3,553 need more than the 50-step cap (51-54 steps), all
    kitchens with 25 or more closed receptacles where the (second, for pick-two) object lies among the last
    receptacles searched: going to and opening every closed receptacle in turn costs that much whatever the
    order."""
    over_cap = {}
    for i in range(DEFAULT_SPLIT_SIZES["train"]):
        h = Household(generate_game("train", i))
        steps = 0
        while not h.won():
            h.execute(expert_step(h)[0])
            steps += 1
        if steps > 50:
            over_cap[i] = steps
    assert over_cap == {680: 52, 724: 53, 800: 51, 1118: 53, 2707: 54, 2900: 51, 3422: 52}
    for i in over_cap:
        g = generate_game("train", i)
        assert g.room == "kitchen" and sum(t in OPENABLE for _, t in g.receptacles) >= 25


@pytest.mark.parametrize("expert", EXPERTS)
def test_expert_recovers_after_random_moves(expert):
    """From whatever state someone else's moves leave (an object in hand, receptacles open, the task's objects
    moved), the expert still wins; without the cap, since the exploring expert may have a whole search ahead."""
    env = AlfWorldEnv(split="train", expert=expert, max_steps=200)
    rng = random.Random(0)
    for i in range(100):
        info = _play_expert(env, i, random_prefix=rng.randint(1, 20), rng=rng)
        assert info["won"], i


BEDROOM_LAMP = [("bed 1", "bed"), ("desk 1", "desk"), ("drawer 2", "drawer"), ("drawer 1", "drawer"),
                ("sidetable 1", "sidetable")]
#: (game, the exploring expert's responses until the win): it looks until it sees what it needs, opening the
#: closed receptacles; heat: the appliance first among the closed ones; pick-two: the goal receptacle opened
#: first, the search resumed where the first object lay; look: then the lamp, searched from the current place.
EXPLORE_TRANSCRIPTS = [
    (game("heat", "egg", "countertop", "heat some egg and put it in countertop", KITCHEN,
          [("egg 1", "fridge 1", False), ("mug 1", "microwave 1", False)]), [
        ("find a egg; first: sinkbasin 1", "go to sinkbasin 1"),
        ("no egg on sinkbasin 1; next: microwave 1", "go to microwave 1"),
        ("microwave 1 is closed; open it", "open microwave 1"),
        ("no egg in microwave 1; next: fridge 1", "go to fridge 1"),
        ("fridge 1 is closed; open it", "open fridge 1"),
        ("egg 1 is in fridge 1; take it", "take egg 1 from fridge 1"),
        ("heat egg 1 with microwave 1", "go to microwave 1"),
        ("heat egg 1", "heat egg 1 with microwave 1"),
        ("put egg 1 on countertop 1", "go to countertop 1"),
        ("put egg 1 on countertop 1", "move egg 1 to countertop 1")]),
    (game("pick2", "cd", "drawer", "put two cd in drawer", BEDROOM_LAMP,
          [("cd 2", "desk 1", False), ("cd 1", "drawer 2", False)], room="bedroom"), [
        ("put two cd in drawer 1; open it first", "go to drawer 1"),
        ("put two cd in drawer 1; open it first", "open drawer 1"),
        ("find a cd; first: desk 1", "go to desk 1"),
        ("cd 2 is on desk 1; take it", "take cd 2 from desk 1"),
        ("put cd 2 in drawer 1", "go to drawer 1"),
        ("put cd 2 in drawer 1", "move cd 2 to drawer 1"),
        ("find another cd; back to desk 1", "go to desk 1"),
        ("no cd on desk 1; next: sidetable 1", "go to sidetable 1"),
        ("no cd on sidetable 1; next: drawer 2", "go to drawer 2"),
        ("drawer 2 is closed; open it", "open drawer 2"),
        ("cd 1 is in drawer 2; take it", "take cd 1 from drawer 2"),
        ("put cd 1 in drawer 1", "go to drawer 1"),
        ("put cd 1 in drawer 1", "move cd 1 to drawer 1")]),
    (game("look", "book", "desklamp", "look at book under the desklamp", BEDROOM_LAMP,
          [("book 1", "desk 1", False), ("desklamp 1", "sidetable 1", True)], room="bedroom"), [
        ("find a book; first: bed 1", "go to bed 1"),
        ("no book on bed 1; next: desk 1", "go to desk 1"),
        ("book 1 is on desk 1; take it", "take book 1 from desk 1"),
        ("no desklamp on desk 1; next: sidetable 1", "go to sidetable 1"),
        ("desklamp 1 is here; use it", "use desklamp 1")]),
]


@pytest.mark.parametrize("spec, transcript", EXPLORE_TRANSCRIPTS, ids=lambda x: getattr(x, "task_type", ""))
def test_explore_expert_transcripts(spec, transcript):
    env = AlfWorldEnv(expert="explore")
    env.reset(options={"game": spec})
    for i, (why, command) in enumerate(transcript):
        response = env.expert_response()
        assert response == f"<think>{why}</think><action>{command}</action>", i
        _, reward, terminated, _, info = env.step(response)
        assert info["action_valid"] and terminated == (i == len(transcript) - 1)
    assert info["won"] and reward == 10.0


def _relocated(spec, rng):
    """``spec`` with the task's objects (and the lamp) moved to other places they could have started in."""
    types = dict(spec.receptacles)

    def spots(o):
        if o.lamp:
            return [n for n, t in spec.receptacles if t in LAMPS[o.type]]
        return [n for n, t in spec.receptacles
                if can_contain(t, o.type) and (spec.task_type == "look" or t != spec.target_type)]

    objects = [ObjectSpec(o.name, o.type, rng.choice(spots(o)) if o.type in (spec.obj_type, spec.target_type)
                          else o.location, o.lamp) for o in spec.objects]
    assert all(can_contain(types[o.location], o.type) or o.lamp for o in objects)
    return dataclasses.replace(spec, objects=objects)


def _windows(expert, specs):
    """What the expert answered to each prompt window (instruction, the last two observations and actions,
    the current observation, the admissible commands) over its own episodes of ``specs``, as a dict
    window -> set of responses, and how many episodes reached each window."""
    answers, reached = {}, {}
    env = AlfWorldEnv(expert=expert)
    for spec in specs:
        obs, info = env.reset(options={"game": spec})
        history, seen = [], set()
        while True:
            window = (info.get("instruction", ""), tuple(history[-2:]), obs, tuple(info["admissible_actions"]))
            response = env.expert_response()
            answers.setdefault(window, set()).add(response)
            if window not in seen:
                seen.add(window)
                reached[window] = reached.get(window, 0) + 1
            next_obs, _, terminated, truncated, step_info = env.step(response)
            history.append((obs, step_info["action"]))
            obs, info = next_obs, {**info, **step_info}
            if terminated or truncated:
                break
    return answers, reached


def test_explore_expert_acts_on_the_prompt_window_only():
    """Everything the exploring expert does is a function of what the policy sees: over many games, each
    replayed with the task's objects moved to other starting places (so the same window arises in several
    episodes with different hidden states), one window always gets one response. The omniscient expert
    answers the same window differently (it heads for where the object is) and so cannot be imitated."""
    rng = random.Random(0)
    specs = [variant for i in range(40) for variant in
             [generate_game("train", i)] + [_relocated(generate_game("train", i), rng) for _ in range(4)]]
    answers, reached = _windows("explore", specs)
    assert all(len(r) == 1 for r in answers.values())
    shared_later = [w for w, n in reached.items() if n > 1 and w[1]]  # met by several episodes after a step
    assert len(shared_later) > 100
    omniscient, _ = _windows("omniscient", specs)
    assert sum(len(r) > 1 for r in omniscient.values()) > 20


def test_explore_expert_never_names_what_it_has_not_seen():
    """Every object the exploring expert names was in its current or a previous observation of the window,
    and every receptacle is one of the room's; its responses fit the tiny model's 48-token budget."""
    from src.policy.model import train_tiny_tokenizer

    tags = ["<think>", "</think>", "<action>", "</action>"]
    tokenizer = train_tiny_tokenizer(AlfWorldEnv.tokenizer_corpus(), 4096, tags)  # model=tiny: its tags that occur here
    longest = (0, "")
    for split in SPLITS:
        env = AlfWorldEnv(split=split, num_games=100)
        for i in range(100):
            obs, info = env.reset(options={"index": i})
            recent = [obs]
            names = set(env.house.recs)
            while True:
                response = env.expert_response()
                objects = {n for n in env.house.things if re.search(rf"\b{n}\b", response)}
                assert all(any(re.search(rf"\b{n}\b", o) for o in recent[-3:]) for n in objects), (i, response)
                assert all(r in names for r in re.findall(r"\b([a-z]+ \d+)\b", response) if r not in objects)
                longest = max(longest, (len(tokenizer(response)["input_ids"]), response))
                obs, _, terminated, truncated, info = env.step(response)
                recent.append(obs)
                if terminated or truncated:
                    break
    assert longest[0] <= 30 and len(longest[1]) < 150, longest


def test_expert_choice_and_search_order():
    with pytest.raises(ValueError, match="unknown expert"):
        AlfWorldEnv(expert="oracle")
    h = Household(EXPLORE_TRANSCRIPTS[0][0])
    assert search_order(h) == ["sinkbasin 1", "microwave 1", "fridge 1", "countertop 1"]  # egg: never in a cabinet
    assert SEARCH_TYPES.index("toilet") < SEARCH_TYPES.index("cabinet")  # surfaces before closed receptacles
    assert expert_step(h, "omniscient") == ("go to fridge 1", "get egg 1 from fridge 1")
    assert expert_step(h) == expert_step(h, "explore") == ("go to sinkbasin 1", "find a egg; first: sinkbasin 1")


# ---------------------------------------------------------------------- splits and determinism
def test_split_sizes_and_all_task_types():
    for split in SPLITS:
        env = AlfWorldEnv(split=split)
        assert env.num_tasks() == DEFAULT_SPLIT_SIZES[split]
        types = {generate_game(split, i).task_type for i in range(120)}
        assert types == set(TASK_TYPES), split
    assert AlfWorldEnv(split="valid_seen", num_games=500).num_tasks() == 500
    with pytest.raises(ValueError):
        AlfWorldEnv(split="test")


def test_split_definition_disjoint():
    held = held_out_combos(0)
    assert held and held < set(all_combos())
    for task in TASK_TYPES:  # every task type has held-out combinations
        assert any(c[0] == task for c in held)
    for room in ROOMS:
        layouts = room_layouts(room)
        assert len({lay.receptacles for lay in layouts}) == LAYOUTS_PER_ROOM  # pairwise different layouts
        seen = {lay.receptacles for lay in layouts if not is_unseen_layout(lay.layout_id)}
        unseen = {lay.receptacles for lay in layouts if is_unseen_layout(lay.layout_id)}
        assert len(seen) == 27 and len(unseen) == 3 and not seen & unseen  # ALFRED: 27 train, 1 + 2 held out
    games = {split: [generate_game(split, i) for i in range(300)] for split in SPLITS}
    for split in ("train", "valid_seen"):
        for g in games[split]:
            assert not is_held_out_combo(g.combo) and not is_unseen_layout(g.layout_id)
    for g in games["valid_unseen"]:
        assert is_held_out_combo(g.combo) and g.layout_id == UNSEEN_LAYOUT_ID
    train_combos = {g.combo for g in games["train"]}
    train_layouts = {(g.room, tuple(g.receptacles)) for g in games["train"]}
    assert not train_combos & {g.combo for g in games["valid_unseen"]}
    assert not train_layouts & {(g.room, tuple(g.receptacles)) for g in games["valid_unseen"]}
    # valid_seen is in-distribution: its combinations and layouts occur in train
    assert {g.combo for g in games["valid_seen"]} & train_combos


# ---------------------------------------------------------------------- calibration on the real game
def test_task_types_per_split_as_alfworld_table_1():
    for split in SPLITS:
        games = [generate_game(split, i) for i in range(DEFAULT_SPLIT_SIZES[split])]
        counts = {t: sum(g.task_type == t for g in games) for t in TASK_TYPES}
        assert counts == TASK_COUNTS[split]
    assert TASK_COUNTS["train"] == {"pick": 790, "look": 308, "clean": 650, "heat": 459, "cool": 533, "pick2": 813}
    assert TASK_COUNTS["valid_seen"] == {"pick": 35, "look": 13, "clean": 27, "heat": 16, "cool": 25, "pick2": 24}
    assert TASK_COUNTS["valid_unseen"] == {"pick": 24, "look": 18, "clean": 31, "heat": 23, "cool": 21, "pick2": 17}
    # beyond ALFWorld's size the same proportions are drawn
    extra = [generate_game("train", 3553 + i).task_type for i in range(600)]
    assert 0.1 < extra.count("pick") / 600 < 0.35 and extra.count("look") < extra.count("pick")


def test_rooms_as_the_real_scenes():
    """valid_unseen plays ALFWorld's four unseen scenes with their receptacles (25/27/18/13); training rooms
    have the real scenes' sizes (about 30/15/14/13); heat/cool only in kitchens, look only where lamps stand;
    as many objects as the real rooms hold."""
    sizes = {"kitchen": 25, "livingroom": 27, "bedroom": 18, "bathroom": 13}
    for room in ROOMS:
        lay = room_layouts(room)[UNSEEN_LAYOUT_ID]
        assert len(lay.receptacles) == sizes[room] == sum(UNSEEN_SCENES[room].values())
    assert UNSEEN_SCENES["kitchen"]["cabinet"] == 6 and UNSEEN_SCENES["livingroom"]["shelf"] == 12
    rooms = {r: [] for r in ROOMS}
    objects = {r: [] for r in ROOMS}
    for i in range(1000):
        g = generate_game("train", i)
        rooms[g.room].append(len(g.receptacles))
        objects[g.room].append(len(g.objects))
        assert g.task_type not in ("heat", "cool") or g.room == "kitchen"
        assert g.task_type != "look" or g.room in ("livingroom", "bedroom")
    mean = {r: sum(v) / len(v) for r, v in rooms.items()}
    assert 26 < mean["kitchen"] < 34 and 12 < mean["livingroom"] < 18
    assert 11 < mean["bedroom"] < 16 and 11 < mean["bathroom"] < 15
    assert min(objects["kitchen"]) >= 40 and max(objects["bathroom"]) <= 20


def test_thousands_of_distinct_games():
    keys = [generate_game("train", i).key() for i in range(DEFAULT_SPLIT_SIZES["train"])]
    assert len(set(keys)) == len(keys)
    for split in ("valid_seen", "valid_unseen"):
        assert not {generate_game(split, i).key() for i in range(DEFAULT_SPLIT_SIZES[split])} & set(keys)


def test_determinism_and_env_seed_independence():
    a = AlfWorldEnv(split="train", seed=0).reset(options={"index": 5})
    b = AlfWorldEnv(split="train", seed=123).reset(options={"index": 5})
    assert a == b
    assert generate_game("valid_unseen", 3).to_dict() == generate_game("valid_unseen", 3).to_dict()
    assert generate_game("train", 3).key() != generate_game("train", 4).key()
    assert generate_game("train", 3).key() != generate_game("train", 3, world_seed=1).key()
    env = AlfWorldEnv(seed=7)
    assert env.reset(seed=11)[1]["task_id"] == env.reset(seed=11)[1]["task_id"]
    assert [AlfWorldEnv(seed=5).reset()[1]["task_id"] for _ in range(2)] == \
        [AlfWorldEnv(seed=5).reset()[1]["task_id"]] * 2
    n = env.num_tasks()
    assert env.reset(options={"index": 2 + n})[1]["task_id"] == env.reset(options={"index": 2})[1]["task_id"]
    # the same expert transcript twice
    runs = []
    for _ in range(2):
        env.reset(options={"index": 9})
        runs.append([env.step(env.expert_response())[0] for _ in range(3)])
    assert runs[0] == runs[1]


def test_goal_phrasing_matches_templates():
    import re
    patterns = [r"put a \w+ in \w+", r"put some \w+ on \w+", r"put a clean \w+ in \w+",
                r"clean some \w+ and put it in \w+", r"put a hot \w+ in \w+", r"heat some \w+ and put it in \w+",
                r"put a cool \w+ in \w+", r"cool some \w+ and put it in \w+", r"put two \w+ in \w+",
                r"find two \w+ and put them in \w+", r"look at \w+ under the \w+", r"examine the \w+ with the \w+"]
    seen = set()
    for i in range(300):
        g = generate_game("train", i)
        matched = [p for p in patterns if re.fullmatch(p, g.goal)]
        assert matched, g.goal
        seen.update(matched)
        assert g.obj_type in g.goal and g.target_type in g.goal
    assert len(seen) == len(patterns)


# ---------------------------------------------------------------------- registry, config, corpus, report
def test_registry_config_and_tokenizer_corpus():
    assert "alfworld" in envs.list_envs()
    cfg = yaml.safe_load((Path(__file__).parents[2] / "configs" / "task" / "alfworld.yaml").read_text())["task"]
    assert cfg["env_name"] == "alfworld" and cfg["val_split"] == "valid_unseen"  # held out: issue 13's metric
    assert cfg["sampler"]["prompt_builder"]["history_length"] == 2
    assert cfg["env"]["expert"] == "explore"
    e = envs.make_env("alfworld", split="valid_unseen", seed=1, **cfg["env"])
    assert isinstance(e, AlfWorldEnv) and e.max_steps == 50 and e.num_tasks() == 134 and e.expert == "explore"
    assert cfg["val_episodes"] == e.num_tasks()  # validation plays the whole split
    texts = list(AlfWorldEnv.tokenizer_corpus(**cfg["env"]))
    assert all(isinstance(t, str) for t in texts)
    joined = "\n".join(texts)
    for word in vocabulary():
        assert word in joined
    assert any(t.startswith("<think>") and "<action>go to " in t for t in texts)
    assert any(t.startswith(WELCOME) for t in texts) and NOTHING_HAPPENS in texts
    # the corpus holds the configured expert's responses
    assert any("; next: " in t for t in texts)
    assert not any("; next: " in t for t in AlfWorldEnv.tokenizer_corpus(**{**cfg["env"], "expert": "omniscient"}))


def test_report_table():
    metrics = {"task/success_pick": 0.5, "task/success_look": 0.25, "task/success_clean": 1.0,
               "task/success_heat": 0.0, "task/success_cool": 0.125, "task/success_pick2": 0.75, "success": 0.6,
               "task/success": 0.6, "episode_return": 6.0}
    table = AlfWorldEnv.report(metrics).splitlines()
    assert len(table) == 3
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert cells[0] == ["Pick", "Look", "Clean", "Heat", "Cool", "Pick2", "All"]
    assert cells[2] == ["50.0", "25.0", "100.0", "0.0", "12.5", "75.0", "60.0"]
    partial = AlfWorldEnv.report({"task/success_heat": 1.0, "success": 0.5}).splitlines()[2]
    assert [c.strip() for c in partial.strip("|").split("|")] == ["-", "-", "-", "100.0", "-", "-", "50.0"]
    assert AlfWorldEnv.report({}) == ""


# ---------------------------------------------------------------------- projection, invalid moves, fuzzing
def test_project_action_as_verl_agent():
    """Lower-case everything; the text between the first <action> and the first </action>, stripped; no
    pair: the last 30 characters, malformed; <think> or </think> missing, or a CJK character: malformed."""
    assert project_action("<think>x</think><action> Go  To\tCabinet 1. </action>") == ("go to cabinet 1", True)
    assert project_action("<THINK>x</THINK><ACTION>look</Action>") == ("look", True)
    assert project_action("<think>x</think><action>look</action><action>help</action>") == ("look", True)
    assert project_action("<think>x</think></action>look<action>") == ("", True)  # end before start: empty
    assert project_action("<think>x</think><action>  </action>") == ("", True)
    assert project_action("look") == ("look", False)
    assert project_action("<think>x</think><action>look") == ("<think>x</think><action>look", False)
    assert project_action("I think I should go to the fridge 1 now, ok?" * 2) == ("ld go to the fridge 1 now, ok?", False)
    assert project_action("<action>look</action>") == ("look", False)  # no <think>
    assert project_action("<think>a<action>look</action>") == ("look", False)  # no </think>
    assert project_action("<action>look</action><think>a</think>") == ("look", True)  # order is not checked
    assert project_action("<action>look</action>", require_think=False) == ("look", True)
    assert project_action("<think>看</think><action>look</action>") == ("look", False)  # CJK
    assert project_action("<think>\u4e00</think><action>look</action>", require_think=False)[1] is False
    assert project_action("<think>ok \U0001F600</think><action>look</action>") == ("look", True)  # not CJK


def _observe(env):
    """Everything an unanswered move must leave unchanged (reads through the engine, not the env)."""
    h = env.house
    return (h.snapshot(), h.look_text(), h.inventory_text(), h.admissible_commands())


MALFORMED = ["", "<action></action>", "<action>look", "x" * 10_000, "行动 <think>a</think><action>看</action>",
             "<action>go to cabinet 99</action>", "<think>a</think> go to nowhere", "\x00\ud7ff" * 5000]
INADMISSIBLE = ["<action>" + "go to cabinet 1 " * 700 + "</action>", "<action>go to cabinet 99</action>",
                "<action>take mug 9 from fridge 1</action>", "<action>move apple 1 to toilet 1</action>",
                "<action>heat sofa 1 with microwave 1</action>", "<action>open countertop 1</action>",
                "<action>go to</action>", "<action>put mug 1 in/on countertop 1</action>", "</action>x<action>"]


@pytest.mark.parametrize("rule", ["format", "strict"])
@pytest.mark.parametrize("response", MALFORMED)
def test_malformed_responses_are_penalised_and_change_nothing(response, rule):
    env = AlfWorldEnv(split="train", invalid_rule=rule)
    env.reset(options={"index": 0})
    before = _observe(env)
    obs, reward, terminated, truncated, info = env.step(response)
    assert obs == NOTHING_HAPPENS == info["anchor_obs"] and reward == 0.0  # the penalty is never in the reward
    assert info["action_valid"] is False and info["penalty"] == pytest.approx(PENALTY)
    assert not terminated and not truncated and info["turn"] == 1
    assert _observe(env) == before and info["admissible_actions"] == [a for a in before[3] if a != "help"]


@pytest.mark.parametrize("response", INADMISSIBLE)
def test_inadmissible_commands_valid_under_format_rule_penalised_under_strict(response):
    for rule, valid in (("format", True), ("strict", False)):
        env = AlfWorldEnv(split="train", invalid_rule=rule)
        env.reset(options={"index": 0})
        before = _observe(env)
        obs, reward, terminated, truncated, info = env.step("<think>try</think>" + response)
        assert obs == NOTHING_HAPPENS and reward == 0.0 and _observe(env) == before
        assert info["action_valid"] is valid and info["penalty"] == (0.0 if valid else PENALTY)


def test_format_rule_sends_what_verl_agent_sends():
    """Under the format rule the projected text goes to the game: a bare admissible command (no tags) is
    executed and penalised; a well-formed command without <think> is executed and penalised; under the
    strict rule neither is executed."""
    for rule, runs in (("format", True), ("strict", False)):
        env = AlfWorldEnv(split="train", invalid_rule=rule)
        env.reset(options={"index": 0})
        target = env.house.order[0]
        obs, reward, _, _, info = env.step(f"go to {target}")
        assert obs.startswith(f"You arrive at {target}.") == runs and env.house.at == (target if runs else None)
        assert not info["action_valid"] and info["penalty"] == PENALTY and info["action"] == f"go to {target}"
        obs, _, _, _, info = env.step("<action>inventory</action>")
        assert (obs == "You are not carrying anything.") == runs and info["penalty"] == PENALTY
    # a winning command without <think> still wins (reward 10) and carries the penalty
    spec = game("pick", "mug", "countertop", "put a mug in countertop", KITCHEN, [("mug 1", "cabinet 1", False)])
    env = AlfWorldEnv()
    env.reset(options={"game": spec})
    for c in ("go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1"):
        env.step(act(c))
    obs, reward, terminated, _, info = env.step("<action>move mug 1 to cabinet 1</action>")
    assert obs == "You move the mug 1 to the cabinet 1." and not terminated and reward == 0.0  # wrong target
    env.step(act("take mug 1 from cabinet 1"))
    env.step(act("go to countertop 1"))
    obs, reward, terminated, _, info = env.step("<action>move mug 1 to countertop 1</action>")
    assert terminated and reward == 10.0 and info["won"] and info["penalty"] == PENALTY
    assert info["metrics"]["invalid_actions"] == 2.0 and info["metrics"]["inadmissible_actions"] == 0.0


def test_invalid_rule_metrics_and_errors():
    with pytest.raises(ValueError, match=r"invalid_rule.*\('format', 'strict'\)"):
        AlfWorldEnv(invalid_rule="lenient")
    responses = [act("go to nowhere 1"), "garbage", act("look"), act("take moon 1 from sky 1"), "<action>look</action>"]
    for rule, invalid in (("format", 2.0), ("strict", 4.0)):
        env = AlfWorldEnv(split="train", invalid_rule=rule, max_steps=len(responses))
        env.reset(options={"index": 0})
        penalties = [env.step(r)[4] for r in responses]
        metrics = penalties[-1]["metrics"]
        assert metrics["invalid_actions"] == invalid and metrics["inadmissible_actions"] == 2.0
        assert metrics["valid_action_ratio"] == pytest.approx(1 - invalid / 5)
        assert sum(i["penalty"] for i in penalties) == pytest.approx(invalid * PENALTY)
        assert all(i["action_valid"] == (i["penalty"] == 0) for i in penalties)
    assert AlfWorldEnv(invalid_action_penalty=0.0).reset()  # a zero coefficient is allowed


_NAMES = st.sampled_from(vocabulary() + ["mug", "xyz", ""])
_COMMANDS = st.one_of(
    st.builds(lambda v, o, n, r, m: f"{v} {o} {n} {r} {m}".strip(),
              st.sampled_from(["take", "move", "heat", "cool", "clean", "put", "use", "examine", "go to", "open"]),
              _NAMES, st.integers(-1, 13), st.sampled_from(["from", "to", "with", "in/on", "in", ""]),
              st.builds(lambda a, b: f"{a} {b}", _NAMES, st.integers(0, 13))),
    st.text(max_size=40),
)


@settings(max_examples=150, deadline=None)
@given(index=st.integers(0, 3552), prefix=st.integers(0, 8), commands=st.lists(_COMMANDS, min_size=1, max_size=6),
       wrap=st.booleans(), rule=st.sampled_from(["format", "strict"]))
def test_fuzz_env_commands(index, prefix, commands, wrap, rule):
    env = AlfWorldEnv(split="train", invalid_rule=rule)
    _, info = env.reset(options={"index": index})
    for _ in range(prefix):  # reach some mid-game state with expert moves
        info = env.step(env.expert_response())[4]
        if "won" in info:
            return
    for command in commands:
        before = _observe(env)
        response = f"<think>try</think><action>{command}</action>" if wrap else command
        obs, reward, terminated, truncated, info = env.step(response)
        assert isinstance(obs, str) and reward in (0.0, 10.0) and isinstance(info["action_valid"], bool)
        assert info["action_valid"] == (info["penalty"] == 0.0) and info["penalty"] in (0.0, PENALTY)
        admitted = info["action"] in before[3]
        if rule == "strict":
            assert info["action_valid"] == (wrap and admitted)
        else:
            assert info["action_valid"] == wrap or "\u4e00" <= max(command, default=" ")
        if not admitted:
            assert obs == NOTHING_HAPPENS and _observe(env) == before
        if terminated or truncated:
            break


_FRAGMENTS = ["<action>", "</action>", "<think>", "</think>", "<ACTION >", "look", "inventory", "go to fridge 1",
              " ", "\n", "\u4e2d", "\U0001F600", "take", "from"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=4), max_size=12).map("".join)))
def test_fuzz_projection_and_step_never_raise(text):
    command, ok = project_action(text)
    assert isinstance(command, str) and isinstance(ok, bool)
    env = AlfWorldEnv(split="valid_seen")
    env.reset(options={"index": 1})
    before = _observe(env)
    obs, reward, terminated, truncated, info = env.step(text)
    assert info["action_valid"] == ok and info["action"] == env.house.canonical(command)
    if info["action"] not in before[3]:
        assert _observe(env) == before and obs == NOTHING_HAPPENS


def test_non_string_and_misuse():
    env = AlfWorldEnv()
    with pytest.raises(RuntimeError):
        env.step("look")
    with pytest.raises(RuntimeError):
        env.expert_response()
    env.reset(options={"index": 0})
    assert env.step(None)[4]["action_valid"] is False


# ---------------------------------------------------------------------- step cap
def test_step_cap_truncates(env):
    env.reset(options={"index": 0})
    for turn in range(1, 51):
        obs, reward, terminated, truncated, info = env.step(act("look") if turn % 2 else "garbage")
        assert not terminated and info["turn"] == turn
        assert truncated == (turn == 50)
    assert info["won"] is False and info["success"] is False
    assert info["metrics"]["success"] == 0.0 and info["metrics"][f"success_{env.game.task_type}"] == 0.0
    assert info["metrics"]["num_steps"] == 50.0 and info["metrics"]["invalid_actions"] == 25.0
    with pytest.raises(RuntimeError):
        env.step(act("look"))
    short = AlfWorldEnv(max_steps=3, reward_scale=1.0)
    short.reset(options={"index": 0})
    assert [short.step(act("look"))[3] for _ in range(3)] == [False, False, True]
    short.reset(options={"index": 0})
    while True:  # a win on the last allowed turn is a win, not a truncation
        obs, reward, terminated, truncated, info = short.step(short.expert_response())
        if terminated or truncated:
            break
    if terminated:
        assert reward == 1.0


def test_household_direct_use():
    h = Household(generate_game("train", 0))
    assert h.execute("nonsense") == (NOTHING_HAPPENS, False)
    assert h.is_admissible("LOOK") and not h.won()
