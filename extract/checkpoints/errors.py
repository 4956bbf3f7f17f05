"""CheckpointError: what every reader, checker and writer of detector checkpoints raises."""


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or unsafe, or its tensors do not fit the model (names say which)."""
