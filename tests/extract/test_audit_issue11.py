"""Issue 11 audit: what the fixes left. A failed write (HDF5's disk-full message spans lines) is one line
that names the flag, and the command prints the system's multi-line errors in one line."""

from __future__ import annotations

import threading

import pytest

from extract.jobs import cli
from extract.jobs.run import _BackgroundWriter
from extract.jobs.summary import JobError

HDF5_DISK_FULL = (
    "[Errno 28] Can't synchronously write data (file write failed: time = Thu Dec  3 06:47:47 2026\n"
    ", filename = 'small/f.h5', errno = 28, error message = 'No space left on device')"
)


class _Writer:
    path = "small/f.h5"

    def __len__(self) -> int:
        return 8


def test_write_failure_is_one_line_naming_the_flag():
    background = _BackgroundWriter.__new__(_BackgroundWriter)
    background.writer, background.error = _Writer(), OSError(HDF5_DISK_FULL)
    background._thread = threading.Thread(target=lambda: None)
    with pytest.raises(JobError) as raised:
        background.raise_if_failed()
    message = str(raised.value)
    assert "\n" not in message and "No space left on device" in message
    assert "--resume" in message and "8 complete images" in message


def test_cli_prints_a_multiline_system_error_in_one_line(monkeypatch, capsys, tmp_path):
    def fail(args):
        raise OSError(HDF5_DISK_FULL)

    monkeypatch.setattr(cli, "_merge", fail)
    status = cli.main(["merge", str(tmp_path / "a.h5"), "--output", str(tmp_path / "m.h5")])
    err = capsys.readouterr().err
    assert status == cli.EXIT_ERROR
    assert err.count("\n") == 1 and err.startswith("lxmert-extract merge: error: [Errno 28]")


def test_a_list_keeps_a_form_feed_or_tab_that_ends_a_name(tmp_path):
    from extract.jobs.inputs import list_images

    (tmp_path / "a.jpg\f").write_bytes(b"x")
    (tmp_path / "b.jpg\t").write_bytes(b"x")
    (tmp_path / "list.txt").write_bytes(b"a.jpg\x0c\r\n  b.jpg\t  \n")
    items = list_images(tmp_path / "list.txt")
    assert [str(source) for _, source in items] == [str(tmp_path / "a.jpg\f"), str(tmp_path / "b.jpg\t")]
