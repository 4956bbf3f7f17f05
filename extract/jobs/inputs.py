"""A job's inputs -> (image id, source) items: folders, globs, list files and `datasets` Datasets.

Ids come from file names (stem or relative path, `ID_FROM`); two inputs giving one id, unreadable
folders and names that cannot be an id (not UTF-8, a newline: they become error records, `UnnamedImage`)
are found here, before any image is decoded. `datasets` is imported when a dataset is read, not with
this module.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..image_errors import ImageLoadError, os_error_reason

if TYPE_CHECKING:
    from ..images import ImageInput

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
LIST_SUFFIX = ".txt"
ID_FROM = ("stem", "path")

ImageItem = tuple[str, str | int]  # (image id, file path or dataset row)


class InputError(ValueError):
    """Inputs or options the job cannot start with (names the input and the fix)."""


def list_images(inputs: str | os.PathLike | Sequence[str | os.PathLike], *, id_from: str = "stem") -> list[ImageItem]:
    """(id, path) of every image the inputs name, in a deterministic order.

    Each input is an image file, a folder (searched recursively for IMAGE_EXTENSIONS, any case; hidden
    files and folders skipped), a glob (``**`` recurses; every file it matches is taken) or a ``.txt``
    file of paths, one per line (relative ones are relative to the list's folder; blank lines and lines
    starting with ``#`` are skipped; a listed file that is missing becomes an error record).
    id_from: "stem" (the file name without its extension) or "path" (the path relative to the folder,
    list file's folder or glob's fixed leading folder it was found through, with its extension, "/"
    separators). Two inputs with one id raise InputError listing them. A file whose name cannot be an id
    (one line of UTF-8 text) is listed as an `UnnamedImage`, which the job records in the error table under
    its name with \\xNN and \\n escapes. A folder that cannot be read raises InputError (it is not skipped).
    """
    if id_from not in ID_FROM:
        raise InputError(f"id_from={id_from!r}: expected one of {', '.join(ID_FROM)}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, (str, os.PathLike)) for i in inputs):
        raise InputError(
            f"inputs is a {type(inputs).__name__}: expected a path or a list of paths (files, folders, globs, .txt "
            "lists), or a datasets.Dataset (not a streaming IterableDataset)"
        )
    if not inputs:
        raise InputError("no inputs: pass image files, folders, globs or .txt lists of paths")
    found: list[tuple[Path, Path]] = []  # (file, root its id is relative to)
    for item in inputs:
        found.extend(_expand(os.fspath(item)))
    items = [_item(path, root, id_from) for path, root in found]
    _refuse_duplicates(items, id_from)
    return items


def _expand(item: str) -> list[tuple[Path, Path]]:
    path = Path(item).expanduser()
    if path.is_dir():
        files = _images_in_folder(path)
        if not files:
            raise InputError(
                f"no images in folder {shown_name(path)} (searched recursively for "
                f"{', '.join(IMAGE_EXTENSIONS)}, any case)"
            )
        return [(file, path) for file in files]
    if path.is_file():
        if path.suffix.lower() == LIST_SUFFIX:
            return _images_in_list(path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return [(path, path.parent)]
        raise InputError(
            f"{shown_name(path)} is neither an image ({', '.join(IMAGE_EXTENSIONS)}) nor a {LIST_SUFFIX} list of image "
            "paths"
        )
    if glob.has_magic(item):
        pattern = os.path.expanduser(item)
        _refuse_unreadable_folders(pattern)
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
        if not files:
            raise InputError(f"the pattern {shown_name(item)} matches no files")
        return [(file, _glob_root(item)) for file in files]
    raise InputError(
        f"{shown_name(path)}: {_why_unusable(path)} (expected an image, a folder, a glob or a {LIST_SUFFIX} "
        "list of paths)"
    )


def _refuse_unreadable_folders(pattern: str) -> None:
    """glob skips a folder it cannot read without a word: refuse one that the pattern would search (every
    folder below the fixed root for a ``**`` pattern, else the folders its folder part matches)."""
    if "**" in pattern:
        folders = [str(_glob_root(pattern))]
    else:
        folders = [folder for folder in glob.glob(os.path.dirname(pattern) or ".") if os.path.isdir(folder)]
    for folder in folders:
        if "**" in pattern:
            _images_in_folder(Path(folder))  # walks the tree, refusing an unreadable folder
            continue
        try:
            os.listdir(folder)
        except OSError as error:
            raise InputError(
                f"cannot read the folder {shown_name(folder)} ({error.strerror}) that the pattern "
                f"{shown_name(pattern)} "
                "searches: its images would be left out; fix its permissions or change the pattern"
            ) from None


def _why_unusable(path: Path) -> str:
    """What the OS says of a path that is neither a file nor a folder (a symlink loop is not "missing")."""
    try:
        path.stat()
    except OSError as error:
        return os_error_reason(error, path)
    return "not a regular file or folder"


def _images_in_folder(folder: Path) -> list[Path]:
    def refuse(error: OSError) -> None:  # os.walk would skip an unreadable folder silently
        raise InputError(
            f"cannot read the folder {shown_name(error.filename)} ({error.strerror}): its images would be left out; "
            "fix its permissions or move it out of the input folder"
        )

    files = []
    for directory, subfolders, names in os.walk(folder, onerror=refuse):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files.extend(
            Path(directory, name)
            for name in names
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    return sorted(files, key=lambda file: file.relative_to(folder).parts)


def _images_in_list(list_file: Path) -> list[tuple[Path, Path]]:
    """Paths are bytes to the OS: the list is split at newlines only (a form feed or other separator is part
    of a name) and decoded like file names, so a name that is not UTF-8 becomes that image's error record."""
    root = list_file.parent
    # only spaces and the \r of \r\n are trimmed: str.strip() would also cut a form feed or tab that ends a name
    lines = [os.fsdecode(line).strip(" \r") for line in list_file.read_bytes().split(b"\n")]
    files = [root / Path(line).expanduser() for line in lines if line and not line.startswith("#")]
    if not files:
        raise InputError(f"the list {shown_name(list_file)} names no images (one path per line)")
    return [(file, root) for file in files]


def _glob_root(pattern: str) -> Path:
    parts = Path(os.path.expanduser(pattern)).parts
    fixed = parts[: next(i for i, part in enumerate(parts) if glob.has_magic(part))]
    return Path(*fixed) if fixed else Path(".")


class UnnamedImage(str):
    """The path of a listed image whose name cannot be an image id, which is one line of UTF-8 text (a file
    name in another encoding, or with a newline): the job records it in the error table, under its name
    with \\xNN and \\n escapes, and stores the other images."""


def _item(path: Path, root: Path, id_from: str) -> ImageItem:
    image_id = path.stem if id_from == "stem" else os.path.relpath(path, root).replace(os.sep, "/")
    if is_text(image_id) and "\n" not in image_id:
        return image_id, str(path)
    return one_line(image_id), UnnamedImage(path)


def is_text(name: str | os.PathLike) -> bool:
    """Whether a name the OS gave (surrogate escapes for bytes that are not UTF-8) is valid UTF-8 text."""
    try:
        os.fspath(name).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def one_line(name: str | os.PathLike) -> str:
    return shown_name(name).replace("\n", "\\n")


def shown_name(name: str | os.PathLike) -> str:
    """A name as printable UTF-8 text: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _refuse_duplicates(items: list[ImageItem], id_from: str) -> None:
    sources: dict[str, list[str]] = {}
    for image_id, source in items:
        sources.setdefault(image_id, []).append(str(source))
    repeated = {image_id: paths for image_id, paths in sources.items() if len(paths) > 1}
    if not repeated:
        return
    shown = "; ".join(f"{image_id!r}: {', '.join(paths)}" for image_id, paths in list(repeated.items())[:10])
    same_files = all(len({os.path.realpath(p) for p in paths}) == 1 for paths in repeated.values())
    if same_files:
        hint = "the same file is named twice (by two inputs): remove the duplicates"
    elif id_from == "stem":
        hint = (
            "ids are file stems: pass --id-from path (id_from='path') for ids that keep the folders and the "
            "extension, or remove the duplicates"
        )
    else:
        hint = "give each file one input root, or remove the duplicates"
    raise InputError(f"{len(repeated)} image id(s) belong to more than one input ({shown}); {hint}")


def dataset_images(
    dataset: Any, *, image_column: str = "image", id_column: str | None = None
) -> tuple[list[ImageItem], int]:
    """(id, row) of a `datasets.Dataset`'s images, and how many rows repeat an earlier row's id.

    Ids are row indices (as str) without ``id_column``, else its values as str. Rows with one id (a VQA
    dataset has one row per question) are taken to hold one image: it is extracted once, from its first
    row; the count of the other rows is returned (the job reports it).
    """
    check_columns(dataset, image_column=image_column, id_column=id_column)
    if len(dataset) == 0:
        raise InputError("the dataset has no rows")
    if id_column is None:
        return [(str(row), row) for row in range(len(dataset))], 0
    first_row: dict[str, int] = {}
    for row, value in enumerate(dataset[id_column]):
        image_id = "" if value is None else str(value)
        if not image_id or "\n" in image_id:
            raise InputError(
                f"row {row} of the id column {id_column!r} holds {value!r}: ids must be non-empty, one line"
            )
        first_row.setdefault(image_id, row)
    return list(first_row.items()), len(dataset) - len(first_row)


def load_dataset_split(
    name_or_path: str | os.PathLike, split: str | None = None, *, split_flag: str = "--split"
) -> Any:
    """A `datasets.Dataset`: a folder written by ``save_to_disk`` (a Dataset, or a DatasetDict and its
    ``split``) or a hub dataset (``load_dataset(name, split=split)``). ``split`` may be omitted when there
    is one split; `split_flag` is the option the messages name for it."""
    import datasets

    path = Path(name_or_path).expanduser()
    if path.exists():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError as error:
            raise InputError(f"{path} is not a dataset written by save_to_disk ({error})") from None
        if isinstance(loaded, datasets.Dataset) and split is not None:
            raise InputError(f"{path} holds a single dataset, not splits: drop {split_flag} ({split!r})")
    else:
        loaded = datasets.load_dataset(str(name_or_path), split=split)
    if isinstance(loaded, datasets.DatasetDict):
        splits = ", ".join(loaded)
        if split is None and len(loaded) != 1:
            raise InputError(f"{name_or_path} has the splits {splits}: choose one ({split_flag})")
        if split is not None and split not in loaded:
            raise InputError(f"{name_or_path} has no split {split!r}; its splits: {splits}")
        loaded = loaded[split] if split is not None else next(iter(loaded.values()))
    return loaded


def check_columns(dataset: Any, **columns: str | None) -> None:
    """InputError naming the option, the missing column and the dataset's columns (None: not asked for)."""
    for option, column in columns.items():
        if column is not None and column not in dataset.column_names:
            raise InputError(
                f"the dataset has no column {column!r} ({option}); its columns: {', '.join(dataset.column_names)}"
            )


def undecoded(dataset: Any, column: str) -> Any:
    """The dataset with an Image ``column`` left encoded ({"bytes", "path"} cells): decoding is load_image's
    job (in the job's worker processes)."""
    import datasets

    if isinstance(dataset.features[column], datasets.Image):
        return dataset.cast_column(column, datasets.Image(decode=False))
    return dataset


def image_input(value: Any) -> ImageInput:
    """A dataset cell as what load_image takes: an Image cell ({"bytes", "path"} undecoded, a PIL image
    decoded), a path, encoded bytes, or pixels (an array, or nested lists)."""
    if value is None:
        raise ImageLoadError("<dataset cell>", "the cell is empty (None)")
    if isinstance(value, dict):
        if value.get("bytes"):
            return value["bytes"]
        if value.get("path"):
            return value["path"]
        raise ImageLoadError("<dataset cell>", f"an image cell with neither bytes nor a path ({sorted(value)})")
    if isinstance(value, list):
        return np.asarray(value, dtype=np.uint8)
    return value
