"""What a loss object declares to the training loop: its phases."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Phase:
    """One optimisation phase of a training step: which module's optimizer steps, and how often."""

    name: str
    module: str
    repeat: int = 1


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
