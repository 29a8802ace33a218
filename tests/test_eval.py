"""src/eval.py: validates a policy on the held-out split and prints the task's results table."""
import logging

import pytest

from envs.deepsearch.benchmark import FAMILIES
from src.eval import evaluate


def test_eval_prints_the_deepsearch_table_per_family(make_cfg, caplog):
    # 7 questions: the first of each family (the test split interleaves them)
    cfg = make_cfg("task=deepsearch", "task.val_episodes=7", "task.val_batch_size=7", "logger=[]",
                   config_name="eval.yaml")
    with caplog.at_level(logging.INFO):
        metrics, _ = evaluate(cfg)
    per_family = [float(metrics[f"val/task/em_{f}"]) for f in FAMILIES]
    assert float(metrics["val/task/em_average"]) == pytest.approx(sum(per_family) / 7)
    table = next(r.getMessage() for r in caplog.records if "Results on split 'test'" in r.getMessage())
    header = table.splitlines()[1]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "NQ†", "TriviaQA*", "PopQA*", "HotpotQA†", "2Wiki*", "Musique*", "Bamboogle*", "In-domain",
        "Out-of-domain", "Avg"]
