"""Pretty-print the composed config and make sure every run is tagged."""

import os
import sys
from pathlib import Path
from typing import Sequence

import rich
import rich.syntax
import rich.tree
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.prompt import Prompt

from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

DEFAULT_PRINT_ORDER = ("task", "algo", "model", "callbacks", "logger", "trainer", "paths", "extras")


@rank_zero_only
def print_config_tree(
    cfg: DictConfig,
    print_order: Sequence[str] = DEFAULT_PRINT_ORDER,
    resolve: bool = False,
    save_to_file: bool = False,
) -> None:
    """Print the config as a rich tree, one branch per top-level key.

    :param cfg: The composed config.
    :param print_order: Keys printed first, in this order; every other top-level key follows in config order.
    :param resolve: Whether to resolve interpolations before printing.
    :param save_to_file: Also write the tree to ``<paths.output_dir>/config_tree.log``.
    """
    style = "dim"
    tree = rich.tree.Tree("CONFIG", style=style, guide_style=style)

    queue = []
    for field in print_order:
        if field in cfg:
            queue.append(field)
        else:
            log.warning(f"Field '{field}' not found in config. Skipping '{field}' config printing...")
    queue += [field for field in cfg if field not in queue]

    for field in queue:
        branch = tree.add(field, style=style, guide_style=style)
        section = cfg[field]
        if isinstance(section, DictConfig):
            content = OmegaConf.to_yaml(section, resolve=resolve)
        else:
            content = str(section)
        branch.add(rich.syntax.Syntax(content, "yaml"))

    rich.print(tree)

    if save_to_file:
        with open(Path(cfg.paths.output_dir, "config_tree.log"), "w") as file:
            rich.print(tree, file=file)


def _can_prompt() -> bool:
    """Ask the user only when someone can answer: an interactive terminal, not CI, not one job of a sweep."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return False
    if sys.stdin is None or not sys.stdin.isatty():
        return False
    # Under multirun every job would prompt again; tags for a sweep belong on the command line.
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return False
    return True


@rank_zero_only
def enforce_tags(cfg: DictConfig, save_to_file: bool = False) -> None:
    """Make sure ``cfg.tags`` is set, so every run can be found again in the logs.

    With no tags, prompt for comma-separated tags if a person can answer (see :func:`_can_prompt`);
    otherwise warn and use ``["dev"]``.

    :param cfg: The composed config (modified in place).
    :param save_to_file: Also write the tags to ``<paths.output_dir>/tags.log``.
    """
    if not cfg.get("tags"):
        tags: list[str] = []
        if _can_prompt():
            log.warning("No tags provided in config. Prompting user to input tags...")
            answer = Prompt.ask("Enter a list of comma separated tags", default="dev")
            tags = [t.strip() for t in answer.split(",") if t.strip()]
        if not tags:
            log.warning("No tags provided in config and no one to ask; using tags=['dev'].")
            tags = ["dev"]
        with open_dict(cfg):
            cfg.tags = tags
        log.info(f"Tags: {cfg.tags}")

    if save_to_file:
        with open(Path(cfg.paths.output_dir, "tags.log"), "w") as file:
            rich.print(cfg.tags, file=file)
