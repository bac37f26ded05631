"""Transfer sets: train on labelled data plus unlabelled inputs that the teacher labels.

The `Distiller` treats a sparse label equal to `label_mask_value` (default
`-1`) as missing: such examples train on the distillation term only, i.e. on
the teacher's soft labels, while labelled examples use
`(1 - alpha) * H + alpha * D`. Concatenating unlabelled inputs with label
`-1` therefore turns them into a teacher-labelled transfer set, mixed into
the same shuffled batches as the labelled data. (Entirely x-only batches,
e.g. `distiller.fit(x_unlabelled)`, work too.)

Use `weighted_metrics=["accuracy"]` when compiling, so accuracy ignores the
unlabelled rows.

References:
    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    2015 (transfer set). https://arxiv.org/abs/1503.02531
"""

import numpy as np

MISSING_LABEL = -1


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
