"""Reading and writing LXMERT weights: safetensors, PyTorch .bin, key checks."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, or its tensors do not fit the model (names and shapes say which)."""
