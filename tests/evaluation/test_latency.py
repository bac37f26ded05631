"""Latency of Keras models: alternated, warmed-up calls."""

import pytest
from helpers import assert_message

from keras_distill.evaluation.latency import measure_latencies
from keras_distill.evaluation.latency import measure_latency


def test_latency_fields(data, student, teacher):
    x, _ = data
    result = measure_latency(student, x[:3], batch_size=5, repeats=3)
    assert result["batch_size"] == 5 and result["repeats"] == 3
    assert 0 < result["min_ms"] <= result["median_ms"]
    both = measure_latencies({"s": student, "t": teacher}, x, batch_size=2, repeats=4, warmup=0)
    assert list(both) == ["s", "t"]
    for timing in both.values():
        assert (timing["batch_size"], timing["repeats"]) == (2, 4)
        assert 0 < timing["min_ms"] <= timing["median_ms"]
    with pytest.raises(ValueError) as error:
        measure_latencies({"s": student}, x, warmup=-1)
    assert_message(error, "`warmup`", "an integer >= 0", "Received: warmup=-1")
