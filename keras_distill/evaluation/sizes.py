"""File sizes as shipped: raw and gzip-compressed (what an app download costs)."""

import gzip
import os


def gzip_size(path, compresslevel=9):
    """Bytes of the file at `path` after gzip compression.

    Sparse weights only shrink a file once it is compressed: the zeros are
    still stored, but compress well.

    Args:
        path: A file path.
        compresslevel: gzip level 1-9. Defaults to `9`.

    Returns:
        An int.

    Example:
        ```python
        gzip_size("student_int8.tflite")
        ```
    """
    with open(os.fspath(path), "rb") as handle:
        return len(gzip.compress(handle.read(), compresslevel=compresslevel, mtime=0))
