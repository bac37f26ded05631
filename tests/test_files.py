import errno
import os

import pytest
from helpers import assert_message

from keras_distill._files import atomic_path
from keras_distill._files import write_text


def test_write_text_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_text(str(path), "first")
    write_text(str(path), "second")
    assert path.read_text() == "second"
    assert os.listdir(path.parent) == ["out.json"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(str(path), suffix=".png") as temporary:
            assert temporary.endswith(".png") and os.path.dirname(temporary) == str(tmp_path)
            with open(temporary, "wb") as stream:
                stream.write(b"half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.png"]


def test_new_files_get_the_usual_mode_and_replacements_keep_theirs(tmp_path):
    old_umask = os.umask(0o022)
    try:
        write_text(str(tmp_path / "new.json"), "{}")
        os.umask(0o027)
        write_text(str(tmp_path / "private.json"), "{}")
    finally:
        os.umask(old_umask)
    assert os.stat(tmp_path / "new.json").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "private.json").st_mode & 0o777 == 0o640
    os.chmod(tmp_path / "new.json", 0o600)
    write_text(str(tmp_path / "new.json"), "[]")
    assert os.stat(tmp_path / "new.json").st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "error_number, kind, reason",
    [
        (
            errno.ENOSPC,
            OSError,
            "no space left on the device of {folder!r} (No space left on device)",
        ),
        (
            errno.EROFS,
            PermissionError,
            "the folder {folder!r} is read-only or not writable (Read-only file system)",
        ),
    ],
)
def test_write_failures_name_the_destination_not_the_temporary_file(
    tmp_path, error_number, kind, reason
):
    path = str(tmp_path / "report.json")
    with pytest.raises(kind) as info:
        with atomic_path(path) as temporary:
            with open(temporary, "w") as stream:
                stream.write("half")
            raise OSError(error_number, os.strerror(error_number), temporary)
    assert_message(
        info,
        "Cannot write `path`",
        reason.format(folder=str(tmp_path)),
        "Nothing was written",
        f"Received: path={path!r}",
    )
    assert info.value.errno == error_number
    assert os.listdir(tmp_path) == []
