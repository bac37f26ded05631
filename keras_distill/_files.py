"""Atomic file writes: a file is either the old one or the complete new one, never partial."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path beside `path`; moves it onto `path` if the block succeeds.

    The temporary file lives in the destination folder (so `os.replace` is
    atomic), is synced to disk before the move, and is removed if anything
    fails, leaving an existing `path` untouched. Missing folders are created.
    The new file gets the mode of the file it replaces, else the usual mode
    of a new file (`0o666` less the umask, e.g. `0o644`), not the private
    `0o600` of temporary files.

    Args:
        path: The destination.
        suffix: Ending of the temporary name, for writers that check it
            (e.g. `".keras"`, `".npz"`, `".png"`). Defaults to `".tmp"`.

    Example:
        ```python
        with atomic_path("report.png", suffix=".png") as temporary:
            figure.savefig(temporary)
        ```
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, _mode_for(path))
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _mode_for(path):
    """The permission bits for a file written at `path`."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically and returns `path`."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)
    return path
