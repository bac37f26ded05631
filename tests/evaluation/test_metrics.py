"""NumPy metrics of the reports: ECE and top-1 agreement against independent references."""

import numpy as np
import pytest
from helpers import reference_ece
from helpers import reference_softmax

from keras_distill.evaluation import metrics


def test_ece_against_numpy_reference():
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=3.0, size=(500, 5))
    labels = rng.integers(0, 5, size=500)
    probabilities = reference_softmax(logits)
    for num_bins in (1, 10, 15):
        np.testing.assert_allclose(
            metrics.expected_calibration_error(probabilities, labels, num_bins),
            reference_ece(probabilities, labels, num_bins),
            rtol=1e-12,
        )


def test_ece_hand_computed():
    # Confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins (0.8667, 0.9333] and (0.5333, 0.6].
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = np.array([0, 1, 1])
    expected = 2 / 3 * abs(0.5 - 0.9) + 1 / 3 * abs(1.0 - 0.6)
    assert metrics.expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    # A perfectly calibrated one-hot predictor has ECE 0.
    assert metrics.expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_agreement_against_numpy_reference():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 4))
    b = a + rng.normal(scale=0.7, size=a.shape)
    expected = sum(int(np.argmax(a[i]) == np.argmax(b[i])) for i in range(300)) / 300
    assert metrics.top1_agreement(a, b) == pytest.approx(expected)
    assert 0.3 < expected < 1.0  # The check can fail: not all rows agree.
