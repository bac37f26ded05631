"""Transfer sets: train on labelled data plus unlabeled inputs that the teacher labels.

The `Distiller` treats a sparse label equal to `label_mask_value` (default
`-1`) as missing: such examples train on the distillation term only, i.e. on
the teacher's soft labels, while labelled examples use
`(1 - alpha) * H + alpha * D`. Concatenating unlabeled inputs with label
`-1` therefore turns them into a teacher-labelled transfer set, mixed into
the same shuffled batches as the labelled data. (Entirely x-only batches,
e.g. `distiller.fit(x_unlabeled)`, work too.)

Use `weighted_metrics=["accuracy"]` when compiling, so accuracy ignores the
unlabeled rows.

References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    2015 (transfer set). https://arxiv.org/abs/1503.02531
    Bucilua, Caruana & Niculescu-Mizil, "Model Compression", KDD 2006
    (MUNGE). https://doi.org/10.1145/1150402.1150464
"""

import numpy as np

from keras_distill import _checks

MISSING_LABEL = -1
# Nearest neighbours are searched among at most this many inputs (a random pool).
NEIGHBOUR_POOL = 8192
_CHUNK = 1024


def transfer_set(x, y, x_unlabeled, missing_label=MISSING_LABEL):
    """Labelled `(x, y)` followed by `x_unlabeled` with label `missing_label`.

    Args:
        x: Labelled inputs.
        y: Their integer labels, shape `(n,)`.
        x_unlabeled: Inputs without labels, same shape after the first axis.
        missing_label: The Distiller's `label_mask_value`. Defaults to `-1`.

    Returns:
        `(x_all, y_all)`: NumPy arrays to pass to `distiller.fit(...,
        shuffle=True)` or to `augment.function_matching_dataset`.

    Example:
        ```python
        (x, y), _ = datasets.mnist1d(seed=0)
        (extra, _), _ = datasets.mnist1d(num_samples=8000, seed=1)
        x_all, y_all = transfer_set(x, y, extra)
        distiller.fit(x_all, y_all, epochs=20, shuffle=True)
        ```
    """
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    x_unlabeled = np.asarray(x_unlabeled)
    if len(y) != len(x):
        raise ValueError(
            f"`y` must hold one label per example of `x` ({len(x)}). Received: y.shape={y.shape}"
        )
    if x_unlabeled.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"`x_unlabeled` must have the example shape of `x` {x.shape[1:]}. "
            f"Received: x_unlabeled.shape={x_unlabeled.shape}"
        )
    if np.any(y == missing_label):
        raise ValueError(
            f"`y` must not already contain the missing label {missing_label}. "
            f"Received: y with {int(np.sum(y == missing_label))} such labels"
        )
    x_all = np.concatenate([x, x_unlabeled.astype(x.dtype)], axis=0)
    y_all = np.concatenate([y, np.full(len(x_unlabeled), missing_label, dtype=y.dtype)])
    return x_all, y_all


def munge(x, copies=16, swap_probability=0.5, spread=1.0, seed=0):
    """Synthetic inputs near the data, for the teacher to label: MUNGE.

    Each input `e` is paired with its nearest neighbour `e'` (Euclidean
    distance over all features; searched among a random pool of at most
    8,192 inputs). A view of `e` keeps each feature `e_j` or, with
    probability `swap_probability`, replaces it by a draw from
    `N(e'_j, |e_j - e'_j| / spread)`. `copies` such views are made of every
    input. Features therefore vary as much as neighbouring inputs differ,
    which keeps the views near the data (unlike noise of a fixed scale),
    and mix between neighbours (unlike mixup, which blends unrelated
    inputs). This is the one-sided form of MUNGE for continuous features:
    the paper also updates `e'` in the same step.

    Args:
        x: Inputs `(n, ...)`, n >= 2, finite; features are compared
            flattened, so standardise them first if their scales differ.
        copies: Views per input. Defaults to `16`.
        swap_probability: Chance that a feature is drawn near the
            neighbour's value. Defaults to `0.5`.
        spread: Divides the standard deviation `|e_j - e'_j|` (the paper's
            `s`). Defaults to `1.0`.
        seed: Seed of the neighbour pool and the draws. Defaults to `0`.

    Returns:
        A float32 array of `copies * n` views, shaped like `x` after its first
        axis, view `k * n + i` made from input `i`.

    Example:
        ```python
        x_all, y_all = transfer_set(x, y, munge(x, copies=16))
        cache = TeacherCache.build(teacher, x_all)
        ```

    References:
        Bucilua, Caruana & Niculescu-Mizil, "Model Compression", KDD 2006,
        algorithm MUNGE. https://doi.org/10.1145/1150402.1150464
    """
    x = np.asarray(x, np.float32)
    if x.ndim == 0 or len(x) < 2:
        raise ValueError(
            f"`x` must hold at least 2 examples (each is paired with its nearest neighbour). "
            f"Received: x of shape {x.shape}"
        )
    _checks.check_finite("x", x)
    copies = _checks.check_int("copies", copies)
    swap_probability = _checks.check_number("swap_probability", swap_probability, minimum=0)
    if swap_probability > 1:
        raise ValueError(
            f"`swap_probability` must be a number in [0, 1]. "
            f"Received: swap_probability={swap_probability!r}"
        )
    spread = _checks.check_positive_number("spread", spread)
    seed = _checks.check_int("seed", seed, minimum=0)
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    neighbour = flat[nearest_neighbours(flat, rng)]
    scale = np.abs(flat - neighbour) / np.float32(spread)
    views = np.empty((copies,) + flat.shape, np.float32)
    for copy in range(copies):
        swap = rng.random(flat.shape) < swap_probability
        views[copy] = np.where(swap, rng.normal(neighbour, scale), flat)
    return views.reshape((-1,) + x.shape[1:])


def nearest_neighbours(flat, rng, pool_size=NEIGHBOUR_POOL):
    """Index of each row's nearest other row (Euclidean), among a random pool of rows.

    Args:
        flat: `(n, features)` float array.
        rng: A NumPy `Generator` that picks the pool when `n > pool_size`.
        pool_size: Most rows searched. Defaults to `8192`.

    Returns:
        An int64 array `(n,)`; row `i` is never its own neighbour.
    """
    pool = np.arange(len(flat))
    if len(flat) > pool_size:
        pool = np.sort(rng.choice(len(flat), pool_size, replace=False))
    candidates = flat[pool]
    squared_norms = np.sum(candidates * candidates, axis=1)
    nearest = np.empty(len(flat), np.int64)
    for start in range(0, len(flat), _CHUNK):
        rows = flat[start : start + _CHUNK]
        # |a - b|^2 without |a|^2, which is the same for every candidate of a row.
        distances = squared_norms[None, :] - 2.0 * rows @ candidates.T
        own = pool[None, :] == np.arange(start, start + len(rows))[:, None]
        distances[own] = np.inf
        nearest[start : start + len(rows)] = pool[np.argmin(distances, axis=1)]
    return nearest
