"""Feature stores: the HDF5 file of a collection's region features (`FeatureStore`, `StoreWriter`,
`verify`), its one-writer lock, shard merging, and LXMERT's TSV format in and out. A store knows
nothing of how features are made: it imports only the shared leaves of extract (boxes, options; images,
labels and draw for `FeatureRecord.draw`), so any stage above it (the jobs, the pipelines, training) may
read and write stores.
"""

from .errors import DuplicateIdError, StoreBusyError, StoreError
from .lock import output_lock
from .merge import merge
from .store import FeatureDataset, FeatureRecord, FeatureStore, StoreMetadata, StoreWriter, VerifyReport, verify
from .tsv import TSVFormatError, export_tsv, import_tsv, read_tsv, write_tsv

__all__ = [
    "DuplicateIdError",
    "FeatureDataset",
    "FeatureRecord",
    "FeatureStore",
    "StoreBusyError",
    "StoreError",
    "StoreMetadata",
    "StoreWriter",
    "TSVFormatError",
    "VerifyReport",
    "export_tsv",
    "import_tsv",
    "merge",
    "output_lock",
    "read_tsv",
    "verify",
    "write_tsv",
]
