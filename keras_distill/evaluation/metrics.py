"""NumPy measures of classifiers used by `report`: accuracy, agreement, calibration.

Pure functions of arrays, usable on any model's predictions.
"""

import numpy as np

from keras_distill._checks import check_int

DEFAULT_NUM_BINS = 15


def softmax(logits):
    """Row-wise softmax of `logits` in float64, computed stably."""
    values = np.asarray(logits, dtype=np.float64)
    values = values - values.max(axis=-1, keepdims=True)
    exp = np.exp(values)
    return exp / exp.sum(axis=-1, keepdims=True)


def accuracy(outputs, labels):
    """Fraction of rows whose top-1 class equals `labels`.

    Args:
        outputs: `(n, num_classes)` logits or probabilities.
        labels: `(n,)` integer class labels.

    Returns:
        A float in `[0, 1]`.
    """
    outputs, labels = _check_pair(outputs, labels)
    return float(np.mean(outputs.argmax(axis=-1) == labels))


def top1_agreement(outputs, reference_outputs):
    """Fraction of rows where two models predict the same top-1 class.

    Args:
        outputs: `(n, num_classes)` logits or probabilities (e.g. the student's).
        reference_outputs: Same shape (e.g. the teacher's).

    Returns:
        A float in `[0, 1]`.

    Example:
        ```python
        top1_agreement(student(x), teacher(x))
        ```
    """
    outputs = np.asarray(outputs)
    reference_outputs = np.asarray(reference_outputs)
    if outputs.shape != reference_outputs.shape or outputs.ndim != 2:
        raise ValueError(
            "`reference_outputs` must have the same (n, num_classes) shape as `outputs` "
            f"{outputs.shape}. Received: reference_outputs.shape={reference_outputs.shape}"
        )
    return float(np.mean(outputs.argmax(axis=-1) == reference_outputs.argmax(axis=-1)))


def expected_calibration_error(probabilities, labels, num_bins=DEFAULT_NUM_BINS):
    """Expected calibration error (ECE) of top-1 confidences, with equal-width bins.

    The confidence of a row is its largest probability `p_i`. Rows fall into
    `num_bins` equal-width bins `B_m = ((m-1)/M, m/M]`, `m = 1..M`
    (a confidence of exactly 0 goes to the first bin). Then

    `ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|`,

    where `acc` is the fraction of correct top-1 predictions in the bin and
    `conf` the mean confidence. Empty bins contribute nothing. `M = 15`
    follows Guo et al. (2017).

    Args:
        probabilities: `(n, num_classes)` probabilities (apply a softmax to
            logits first).
        labels: `(n,)` integer class labels.
        num_bins: Number of equal-width bins `M`. Defaults to `15`.

    Returns:
        A float in `[0, 1]`.

    Example:
        ```python
        ece = expected_calibration_error(softmax(model.predict(x)), y)
        ```

    References:
        Guo, Pleiss, Sun & Weinberger, "On Calibration of Modern Neural
        Networks", ICML 2017. https://arxiv.org/abs/1706.04599
    """
    num_bins = check_num_bins(num_bins)
    probabilities, labels = _check_pair(probabilities, labels, "probabilities")
    confidences = probabilities.max(axis=-1).astype(np.float64)
    correct = (probabilities.argmax(axis=-1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidences * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    total = 0.0
    for index in range(num_bins):
        members = bins == index
        count = int(members.sum())
        if count:
            gap = abs(correct[members].mean() - confidences[members].mean())
            total += count / len(labels) * gap
    return float(total)


def check_num_bins(num_bins):
    """Returns `num_bins` as an int, or raises unless it is an integer >= 1."""
    return check_int("num_bins", num_bins)


def _check_pair(outputs, labels, name="outputs"):
    outputs = np.asarray(outputs)
    labels = np.asarray(labels).reshape(-1)
    if outputs.ndim != 2:
        raise ValueError(
            f"`{name}` must be a 2-D (n, num_classes) array. Received: {name}.shape={outputs.shape}"
        )
    if len(labels) != len(outputs):
        raise ValueError(
            f"`labels` must hold one label per row of `{name}` ({len(outputs)}). "
            f"Received: labels.shape={labels.shape}"
        )
    return outputs, labels
