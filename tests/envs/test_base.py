"""What every registered environment shares: the opening of ``step`` (TextEnv._begin_step)."""
import pytest

import envs

# the test splits each environment has
SPLITS = {"deepsearch": "test", "alfworld": "valid_seen", "webshop": "val"}


@pytest.mark.parametrize("name", envs.list_envs())
def test_step_is_refused_before_reset_and_after_the_end(name):
    env = envs.make_env(name, split=SPLITS[name])
    with pytest.raises(RuntimeError, match=rf"{type(env).__name__}.step called before reset\(\)"):
        env.step("anything")
    env.reset(options={"index": 0})
    obs, reward, terminated, truncated, info = env.step(None)  # not a string: an invalid step, no crash
    assert info["action_valid"] is False and info["action"] == ""
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(env.expert_response())
    with pytest.raises(RuntimeError, match="called after the episode ended; call reset"):
        env.step("anything")
