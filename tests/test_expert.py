"""Expert demonstrations for the warm start, with and without DART-style noise injection."""
import pytest

import envs
from src.rollout.expert import expert_demonstrations, miscounted, noisy_response
from src.rollout.prompts import PromptBuilder


class _PlainTokenizer:
    """apply_chat_template only: the prompts' text is all these tests read."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[0]["content"]


def _demos(noise, n=20, seed=0):
    env = envs.make_env("alfworld", split="train")
    resets = [{"options": {"index": i}} for i in range(n)]
    return expert_demonstrations([env] * n, resets, PromptBuilder(history_length=2), _PlainTokenizer(), noise=noise,
                                 seed=seed)


def test_noise_visits_failure_states_and_records_only_expert_responses():
    clean, clean_success = _demos(0.0)
    noisy, noisy_success = _demos(0.3)
    assert clean_success == 1.0
    # without noise the expert never fails a command; with it, some prompts show the game's failure text
    assert not any("(current): Nothing happens." in p for p, _ in clean)
    recovering = [(p, r) for p, r in noisy if "(current): Nothing happens." in p]
    assert recovering
    # what is recorded is always the expert's answer: well-formed, and never "try something else"
    for _, response in noisy:
        assert response.startswith("<think>") and "<action>" in response and "try something else" not in response
    assert len(noisy) > len(clean)  # detours make the episodes longer
    assert noisy == _demos(0.3)[0]  # seeded
    assert noisy != _demos(0.3, seed=1)[0]


def test_noisy_response_choices_and_bad_noise():
    import random

    rng = random.Random(0)
    assert noisy_response(rng, None, None) is None
    assert noisy_response(rng, None, "<action>look</action>") == "<action>look</action>"
    seen = {noisy_response(rng, ["look", "inventory"], "prev") for _ in range(50)}
    assert seen == {"prev", "<think>try something else</think><action>look</action>",
                    "<think>try something else</think><action>inventory</action>"}
    expert = "<think>no mug on countertop 3; next: countertop 4</think><action>go to countertop 3</action>"
    seen = {noisy_response(rng, None, "prev", expert) for _ in range(50)}
    assert seen == {"prev", "<think>no mug on countertop 3; next: countertop 4</think><action>go to countertop 4</action>"}
    with pytest.raises(ValueError, match="noise"):
        _demos(1.0, n=1)


def test_miscounted_raises_the_last_number_of_the_action_only():
    assert miscounted("<think>take mug 1</think><action>take mug 1 from cabinet 12</action>") == \
        "<think>take mug 1</think><action>take mug 1 from cabinet 13</action>"
    assert miscounted("<think>3 left</think><action>look</action>") is None
    assert miscounted("no tags 3") is None
