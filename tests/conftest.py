"""Shared fixtures: configs composed with Hydra's compose API, shrunk to seconds of CPU work."""
import os
from pathlib import Path
from typing import List, Optional

import pytest
import rootutils
from hypothesis import settings
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

# CI runs the property tests on hypothesis' fixed example sequence, so a run can be repeated exactly;
# locally they explore new random examples every time.
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)
CONFIG_DIR = str(Path(ROOT) / "configs")

# Tiny budgets for every test run: the whole loop in seconds.
FAST_OVERRIDES = [
    "debug=smoke",
    "extras.print_config=false",
    "extras.enforce_tags=false",
]


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory) -> Path:
    """One artifact cache (tokenizer, tiny model, warm starts) per test session, never the user's."""
    return tmp_path_factory.mktemp("artifacts")


def compose_cfg(config_name: str, overrides: List[str], output_dir: Path, artifact_dir: Optional[Path]) -> DictConfig:
    """Compose ``configs/<config_name>`` like the CLI would, with the Hydra config set so that
    ``${hydra:...}`` interpolations resolve outside a running Hydra app."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=overrides)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        if artifact_dir is not None:
            cfg.paths.artifact_dir = str(artifact_dir)
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def make_cfg(tmp_path, artifact_dir):
    """``make_cfg(*overrides, config_name="train.yaml")`` -> a fast test config in a fresh output dir."""

    def make(*overrides: str, config_name: str = "train.yaml", fast: bool = True) -> DictConfig:
        extra = FAST_OVERRIDES if fast else []
        return compose_cfg(config_name, extra + list(overrides), tmp_path, artifact_dir)

    return make
