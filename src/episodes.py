"""The episode inspector: one static HTML page per run, built from the run's recorded episodes.

    python src/episodes.py logs/train/runs/<run>          # writes logs/train/runs/<run>/episodes.html

Input: ``<run dir>/episodes/epoch_<k>_{train,val}.jsonl`` (the ``EpisodeRecorder`` callback). The page
is self-contained (inline CSS and JS, no network), so it opens from disk or as a CI artefact: the
epochs and their episodes with filters (split, won/lost, task type or family, length), each episode's
steps in order with the response tokens shaded by their entropy and, for training episodes, bars of
the base and the EMPG-modulated advantage, and the same validation tasks side by side in the first
and the last validation epoch.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
FILE = re.compile(r"epoch_(\d+)_(train|val)\.jsonl$")


def load_episodes(run_dir: Path) -> List[Dict[str, Any]]:
    """Every recorded episode of a run, ordered by (epoch, split, position in its file); each gets
    ``uid``, the id of its view on the page."""
    episodes: List[Dict[str, Any]] = []
    files = []
    for path in (Path(run_dir) / "episodes").glob("epoch_*.jsonl"):
        match = FILE.search(path.name)
        if match:
            files.append((int(match.group(1)), match.group(2), path))
    for epoch, split, path in sorted(files):
        with open(path) as f:
            for i, line in enumerate(x for x in f if x.strip()):
                record = json.loads(line)
                record["uid"] = f"e{epoch}-{split}-{i}"
                episodes.append(record)
    return episodes


def _epochs(episodes: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per epoch: recorded and won episodes of each split."""
    table: Dict[int, Dict[str, Any]] = {}
    for e in episodes:
        row = table.setdefault(e["epoch"], {"epoch": e["epoch"], "train": [0, 0], "val": [0, 0]})
        row[e["split"]][0] += 1
        row[e["split"]][1] += int(e["won"])
    return [table[k] for k in sorted(table)]


def _comparisons(episodes: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Validation episodes of the same task in the first and the last validation epoch, paired."""
    val_epochs = sorted({e["epoch"] for e in episodes if e["split"] == "val"})
    if len(val_epochs) < 2:
        return {"first": val_epochs[0] if val_epochs else None, "last": None, "pairs": []}
    first, last = val_epochs[0], val_epochs[-1]
    later = {str(e["task_id"]): e for e in episodes if e["split"] == "val" and e["epoch"] == last}
    pairs = [{"uid": f"cmp-{i}", "task_id": e["task_id"], "first": e, "last": later[str(e["task_id"])]}
             for i, e in enumerate(x for x in episodes if x["split"] == "val" and x["epoch"] == first
                                   and str(x["task_id"]) in later)]
    return {"first": first, "last": last, "pairs": pairs}


def _max_abs(values: Sequence[Optional[float]], floor: float) -> float:
    return max([abs(v) for v in values if v is not None] + [floor])


def render(run_dir: Path, out: Optional[Path] = None) -> Path:
    """Render ``<run dir>/episodes.html`` (or ``out``) from the run's recorded episodes.

    Raises:
        FileNotFoundError: the run has no recorded episodes.
    """
    run_dir = Path(run_dir)
    episodes = load_episodes(run_dir)
    if not episodes:
        raise FileNotFoundError(f"no recorded episodes under {run_dir / 'episodes'} "
                                "(record_episodes=0, or the run ended before its first validation)")
    steps = [s for e in episodes for s in e["steps"]]
    # one scale for the whole page, so shades and bars compare across steps, episodes and epochs
    max_entropy = _max_abs([h for s in steps for h in s["token_entropies"]], 1e-6)
    max_advantage = _max_abs([s[k] for s in steps for k in ("base_advantage", "advantage")], 1e-6)

    def shade(entropy: Optional[float]) -> str:
        level = 0.0 if entropy is None else min(1.0, entropy / max_entropy)
        return f"rgba(230, 97, 0, {0.85 * level:.3f})"

    def bar(value: Optional[float]) -> str:
        """Inline style of an advantage bar drawn from the centre line (half the width = the scale)."""
        width = 0.0 if value is None else min(50.0, 50.0 * abs(value) / max_advantage)
        left = 50.0 - width if (value or 0.0) < 0 else 50.0
        return f"left:{left:.2f}%;width:{width:.2f}%"

    def num(value: Optional[float], digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(shade=shade, bar=bar, num=num)
    html = env.get_template("episodes.html.j2").render(
        run=run_dir.resolve().name, envs=sorted({e["env"] for e in episodes if e["env"]}), episodes=episodes,
        epochs=_epochs(episodes), compare=_comparisons(episodes),
        task_types=sorted({e["task_type"] for e in episodes}), max_entropy=max_entropy, max_advantage=max_advantage,
        max_length=max(e["length"] for e in episodes))
    out = Path(out) if out is not None else run_dir / "episodes.html"
    out.write_text(html, encoding="utf-8")
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder holding episodes/epoch_<k>_{train,val}.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="the HTML file (default: <run dir>/episodes.html)")
    args = parser.parse_args(argv)
    try:
        path = render(args.run_dir, args.out)
    except FileNotFoundError as err:
        parser.exit(1, f"{err}\n")
    print(path)


if __name__ == "__main__":
    main()
