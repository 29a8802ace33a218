"""scripts/deepsearch_misses.py sorts misses by where they went wrong (hand-made episodes)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))

import deepsearch_misses as dm  # noqa: E402


def _episode(responses, feedbacks, won=False, family="nq", task_id="q1"):
    steps = [{"response": r, "feedback": f} for r, f in zip(responses, feedbacks)]
    return {"won": won, "task_type": family, "task_id": task_id, "steps": steps}


def test_classes():
    passage = "<information>The capital of Vrastondeth is Grudor.</information>"
    search = "<think>I need the capital.</think><search>Vrastondeth capital</search>"
    cases = {
        "won": _episode([search, "<think>It is Grudor.</think><answer>Grudor</answer>"], [passage, ""], won=True),
        "search": _episode([search, "<think>It is Zestad.</think><answer>Zestad</answer>"],
                           ["<information>x</information>", ""]),
        "reading": _episode([search, "<think>It is Vrogard.</think><answer>Vrogard</answer>"], [passage, ""]),
        "copying": _episode([search, "<think>It is Grudor.</think><answer>Vrogard</answer>"], [passage, ""]),
    }
    gold = ["grudor"]
    got = {name: dm.classify(e, gold) for name, e in cases.items()}
    assert got["won"] == "won"
    assert "(search)" in got["search"] and "(reading)" in got["reading"] and "(copying)" in got["copying"]
    # only in-domain families are counted
    counts = dm.tally([*cases.values(), _episode([search], [passage], family="popqa")], {"q1": gold})
    assert sum(counts.values()) == 4 and counts["won"] == 1
