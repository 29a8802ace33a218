"""A callback that SIGKILLs its own training process at a chosen batch: a preemption that leaves no chance
to clean up, at a deterministic point (the resume test imports it by name from a spawned run)."""
import os
import signal

from lightning import Callback


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
