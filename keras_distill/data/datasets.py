"""Offline datasets for examples, tests and benchmarks (generated or shipped in a wheel)."""

import numpy as np

_INSTALL_HINT = "Install it with `pip install 'keras-distill[examples]'`."


def mnist1d(num_samples=5000, train_split=0.8, seed=42):
    """MNIST-1D, generated locally: 10 classes of length-40 signals.

    Never downloads (the `mnist1d` package's `get_dataset()` would try).
    The global NumPy random state is left as it was.

    Args:
        num_samples: Total number of examples (train + test). Defaults to `5000`.
        train_split: Fraction used for training. Defaults to `0.8`.
        seed: Generator seed; different seeds give different examples.
            Defaults to `42` (the published split).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float32 `(n, 40)` signals,
        int32 labels.

    References:
        Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", 2024.
        https://arxiv.org/abs/2011.14439
    """
    try:
        from mnist1d.data import get_dataset_args
        from mnist1d.data import make_dataset
    except ImportError as error:
        raise ImportError(f"`mnist1d()` needs the `mnist1d` package. {_INSTALL_HINT}") from error
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.train_split = float(train_split)
    args.seed = int(seed)
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    return (
        (data["x"].astype("float32"), data["y"].astype("int32")),
        (data["x_test"].astype("float32"), data["y_test"].astype("int32")),
    )


def digits(train_fraction=0.5, seed=0):
    """scikit-learn's 8x8 digits (1,797 images, shipped in the wheel), split at random.

    Args:
        train_fraction: Fraction used for training. Defaults to `0.5`.
        seed: Seed of the split. Defaults to `0`.

    Returns:
        `(x_train, y_train), (x_test, y_test)`: float32 `(n, 8, 8, 1)` images
        in `[0, 1]`, int32 labels.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(f"`digits()` needs scikit-learn. {_INSTALL_HINT}") from error
    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")[..., None]
    labels = bunch.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = int(round(train_fraction * len(labels)))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])
