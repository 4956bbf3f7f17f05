"""The errors of feature stores: one base, `StoreError`, for every store problem."""


class StoreError(Exception):
    """A file that is not a feature store, is damaged, cannot be read by this version, or does not fit the
    request."""


class DuplicateIdError(StoreError, ValueError):
    """Image ids given to a writer twice, or found in more than one shard."""


class StoreBusyError(StoreError):
    """Another process is writing the store (it holds the store's `output_lock`)."""
