"""Merging the shard stores of a distributed job into one store."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import DuplicateIdError, StoreError
from .lock import output_lock, resolved
from .store import FeatureStore, copy_into, settings_differences


def merge(shard_paths: Sequence[str | os.PathLike], output: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Copy the records and errors of shard stores into one new store at ``output``.

    The shards must have been made with the same settings (`StoreMetadata` and feature dtype; an "unknown"
    id scheme matches any) and share no image id; otherwise nothing is written and the error names the
    shard and the ids or settings. The copy goes to a side file that replaces ``output`` only once it is
    complete, under ``output``'s lock: a store another process is writing is not replaced (StoreBusyError),
    and a failed merge (a damaged shard, a full disk) leaves ``output`` as it was.
    """
    if not shard_paths:
        raise ValueError("merge needs at least one shard")
    output = Path(output)
    with output_lock(output):
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output} already exists; pass overwrite=True to replace it")
        for shard_path in shard_paths:
            if output.exists() and Path(shard_path).exists() and os.path.samefile(shard_path, output):
                raise ValueError(
                    f"the merge output {output} is also one of its shards ({shard_path}): merge into a new file"
                )
        with contextlib.ExitStack() as opened:
            shards = [opened.enter_context(FeatureStore(path)) for path in shard_paths]
            first = shards[0]
            reference = first.metadata.settings(first.feature_dtype)
            owner: dict[str, Path] = {}
            for shard in shards:
                differences = settings_differences(
                    reference, shard.metadata.settings(shard.feature_dtype), shard.path.name
                )
                if differences:
                    raise StoreError(
                        f"{shard.path} was made with other settings than the store {first.path} ({differences})"
                    )
                duplicates = [image_id for image_id in shard.ids() if image_id in owner]
                if duplicates:
                    raise DuplicateIdError(
                        f"{len(duplicates)} image id(s) of {shard.path} are also in {owner[duplicates[0]]}"
                        f"{' (or another shard)' if len(shards) > 2 else ''}: {duplicates[:10]}"
                    )
                owner.update(dict.fromkeys(shard.ids(), shard.path))
            schemes = {shard.metadata.id_scheme for shard in shards} - {"unknown"}
            metadata = dataclasses.replace(first.metadata, id_scheme=schemes.pop() if schemes else "unknown")
            target = resolved(output)
            partial = target.with_name(target.name + ".merging")
            copy_into(partial, shards, metadata)
        os.replace(partial, target)
    return output
