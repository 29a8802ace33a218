from src.rollout.prompts import PromptBuilder
from src.rollout.sampler import EpisodeRecord, MultiTurnSampler, RolloutResult, StepRecord

__all__ = ["EpisodeRecord", "MultiTurnSampler", "PromptBuilder", "RolloutResult", "StepRecord"]
