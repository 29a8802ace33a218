"""Per-step prompts: task instruction + the last few (observation, action) steps + the current
observation (+ the admissible actions where the task has a finite set), as one user turn.

Per-step prompts with a bounded history window (verl-agent's layout), rather than one ever-growing
sequence, keep every training row short, which matters for 50-step tasks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from transformers import PreTrainedTokenizerBase


@dataclass
class PromptBuilder:
    """Renders an episode's state as the chat prompt the policy answers.

    Args:
        history_length: how many previous steps (the observation each answered and the action
            taken) to show; 0 shows none. The instruction must carry the task itself (question,
            goal), since early steps fall out of the window.
        max_observation_chars: long observations (e.g. retrieved documents) are cut to this many
            characters so a prompt stays within the model's context.
    """

    history_length: int = 2
    max_observation_chars: int = 2000

    def render_text(
        self,
        instruction: str,
        observation: str,
        history: Sequence[Tuple[str, str]] = (),  # (observation, action) of each previous step
        admissible_actions: Optional[Sequence[str]] = None,
    ) -> str:
        parts: List[str] = [instruction.strip()]
        shown = list(history)[-self.history_length:] if self.history_length > 0 else []
        first_shown = len(history) - len(shown) + 1
        for i, (obs, action) in enumerate(shown, start=first_shown):
            parts.append(f"Observation {i}: {self._cut(obs)}\nAction {i}: {action or '(invalid)'}")
        parts.append(f"Observation {len(history) + 1} (current): {self._cut(observation)}")
        if admissible_actions:
            parts.append("Admissible actions: " + ", ".join(f"'{a}'" for a in admissible_actions))
        return "\n".join(parts)

    def render(self, tokenizer: PreTrainedTokenizerBase, *args, **kwargs) -> str:
        """The full prompt string (chat template applied, generation prompt added)."""
        messages = [{"role": "user", "content": self.render_text(*args, **kwargs)}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _cut(self, text: str) -> str:
        return text if len(text) <= self.max_observation_chars else text[: self.max_observation_chars] + " ..."
