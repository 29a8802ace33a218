from src.data.batch import collate_steps
from src.data.rollout_datamodule import RolloutDataModule

__all__ = ["RolloutDataModule", "collate_steps"]
