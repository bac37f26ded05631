"""Checks of teacher-cache contents: at build (storage range) and at load (hostile files).

A cache file is plain arrays, so anything can be in it: each array is checked
for its presence, kind, shape and values before the cache is used.
"""

import numpy as np

FLOAT16_MAX = float(np.finfo(np.float16).max)
KEYS = ("logits", "indices", "meta", "digest")


def check_storable(logits, dtype):
    """Raises unless the teacher's `logits` are finite and fit the storage `dtype`."""
    if not np.all(np.isfinite(logits)):
        row = int(np.argmax(~np.isfinite(logits).reshape(len(logits), -1).all(-1)))
        raise ValueError(
            "The teacher's outputs hold NaN or Inf, which a cache would store and train on. "
            f"Fix the teacher or its inputs. Received: teacher outputs row {row} non-finite"
        )
    largest = float(np.max(np.abs(logits))) if logits.size else 0.0
    if dtype == "float16" and largest > FLOAT16_MAX:
        raise ValueError(
            f"The teacher's logits reach {largest:.6g}, beyond float16's largest value "
            f"{FLOAT16_MAX:.0f}: they would be stored as Inf. Build the cache with "
            f"dtype='float32'. Received: dtype='float16'"
        )


def check_loaded(arrays, path):
    """Checks the arrays of a cache file; returns `(logits, indices, num_examples, num_classes,
    digest)`.

    Args:
        arrays: `{name: array}` read from the file.
        path: The file, for the messages.
    """

    def refuse(reason):
        return ValueError(
            f"`path` is not a valid teacher cache: {reason}. Rebuild it with "
            f"`TeacherCache.build(...).save(path)`. Received: path={path!r}"
        )

    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise refuse(f"the array {missing[0]!r} is missing (it holds {sorted(arrays)})")
    logits, indices, meta, digest = (arrays[key] for key in KEYS)
    if meta.shape != (2,) or meta.dtype.kind not in "iu" or np.any(meta < 1):
        raise refuse(f"'meta' must be 2 positive integers, not {meta.dtype} of shape {meta.shape}")
    num_examples, num_classes = (int(value) for value in meta)
    if logits.ndim < 2 or logits.dtype.kind != "f":
        raise refuse(
            f"'logits' must be a float array of 2 or more dimensions, not {logits.dtype} of "
            f"shape {logits.shape}"
        )
    if len(logits) != num_examples:
        raise refuse(f"'logits' has {len(logits)} rows for {num_examples} examples")
    bad = ~np.isfinite(logits.reshape(len(logits), -1)).all(axis=-1)
    if bad.any():
        raise refuse(f"'logits' holds NaN or Inf (row {int(np.argmax(bad))})")
    if digest.ndim != 0 or digest.dtype.kind != "U":
        raise refuse(f"'digest' must be one string, not {digest.dtype} of shape {digest.shape}")
    if indices.size == 0:
        if logits.shape[-1] != num_classes:
            raise refuse(f"'logits' has {logits.shape[-1]} columns for {num_classes} classes")
        return logits, None, num_examples, num_classes, str(digest)
    if indices.shape != logits.shape or indices.dtype.kind not in "iu":
        raise refuse(
            f"'indices' must be integers shaped like 'logits' {logits.shape}, not "
            f"{indices.dtype} of shape {indices.shape}"
        )
    outside = (indices < 0) | (indices >= num_classes)
    if outside.any():
        row = int(np.argmax(outside.reshape(len(indices), -1).any(axis=-1)))
        raise refuse(
            f"'indices' holds class {int(indices[outside][0])} (row {row}), outside "
            f"[0, {num_classes - 1}]"
        )
    return logits, indices, num_examples, num_classes, str(digest)


def check_loaded_rest(arrays, logits, indices, path):
    """The optional `rest_logits` array of a top-k cache file (one per position), or `None`."""
    rest = arrays.get("rest_logits")
    if rest is None or rest.size == 0:
        return None
    if indices is None or rest.shape != logits.shape[:-1] or rest.dtype.kind != "f":
        raise ValueError(
            f"`path` is not a valid teacher cache: 'rest_logits' must be floats of shape "
            f"{logits.shape[:-1]} beside top-k 'indices', not {rest.dtype} of shape "
            f"{rest.shape}. Rebuild it with `TeacherCache.build(...).save(path)`. "
            f"Received: path={path!r}"
        )
    if not np.isfinite(rest).all():
        raise ValueError(
            "`path` is not a valid teacher cache: 'rest_logits' holds NaN or Inf. Rebuild it "
            f"with `TeacherCache.build(...).save(path)`. Received: path={path!r}"
        )
    return rest
