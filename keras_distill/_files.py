"""Atomic file writes: a file is either the old one or the complete new one, never partial."""

import contextlib
import errno
import os
import tempfile

_READ_ONLY_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path beside `path`; moves it onto `path` if the block succeeds.

    The temporary file lives in the destination folder (so `os.replace` is
    atomic), is synced to disk before the move, and is removed if anything
    fails, leaving an existing `path` untouched. Missing folders are created.
    An `OSError` while writing (a read-only folder, a full disk) becomes one
    that names `path` and its folder, not the temporary file.
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
    temporary = None
    try:
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix
        )
        os.close(handle)
        yield temporary
        os.chmod(temporary, _mode_for(path))
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except Exception as error:
        cause = _os_error(error)
        if cause is None:
            raise
        raise _write_error(cause, path, folder) from error
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.remove(temporary)


def _os_error(error):
    """The `OSError` behind `error` (itself, or in its cause/context chain), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _write_error(cause, path, folder):
    if cause.errno in _READ_ONLY_ERRNOS:
        error = PermissionError(
            f"Cannot write `path`: the folder {folder!r} is read-only or not writable "
            f"({cause.strerror}). Nothing was written; an existing file is unchanged. "
            f"Received: path={path!r}"
        )
    elif cause.errno in _FULL_ERRNOS:
        error = OSError(
            f"Cannot write `path`: no space left on the device of {folder!r} "
            f"({cause.strerror}). Nothing was written; an existing file is unchanged. "
            f"Received: path={path!r}"
        )
    else:
        error = OSError(
            f"Cannot write `path` ({cause.strerror or cause}). Nothing was "
            f"written; an existing file is unchanged. Received: path={path!r}"
        )
    error.errno = cause.errno
    return error


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
