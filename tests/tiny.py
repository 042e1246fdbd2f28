"""The one tiny-model config the tests share: real training in seconds.

``TINY_TABLE`` fits the table families (ctgan, tabular_gan) on penguins in about a second
an epoch; ``TINY_IMAGE`` fits ``image_cgan`` on 8 x 8 digits. Tests override what they
exercise (``{**TINY_TABLE, "epochs": 3}``) and leave the rest alone.
"""

from __future__ import annotations

from synthgen.training.callbacks import Callback

TINY_TABLE = {"name": "ctgan", "epochs": 2, "batch_size": 100, "seed": 0,
              "generator_dim": [32], "discriminator_dim": [32], "embedding_dim": 16}
TINY_GAN = {**TINY_TABLE, "name": "tabular_gan"}
TINY_IMAGE = {"name": "image_cgan", "epochs": 2, "batch_size": 32, "seed": 0, "device": "cpu",
              "generator_dim": [8], "discriminator_dim": [8], "embedding_dim": 16}



class KillAfter(Callback):
    """Stops a fit the way Ctrl-C would, after epoch ``after`` (1-based): the resume tests'
    simulated kill, raised after that epoch's checkpoint."""

    def __init__(self, after: int):
        self.after = after

    def on_epoch_end(self, epoch, logs):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt("simulated kill")
