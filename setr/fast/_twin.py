"""A second module tree over the same tensors."""

from __future__ import annotations

import copy
import itertools

from torch import nn


def shared_twin(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``'s modules that shares every parameter and buffer with it (no weights
    are copied): swapping a module's class or replacing a tensor in the twin leaves ``model`` as it was."""
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, shared)
