"""`_add_at.add_at`: dense rows plus a few values per row, against NumPy's `np.add.at`."""

import numpy as np
import pytest
import tensorflow as tf

from keras_distill import _add_at

SHAPE, K = (3, 5, 11), 4


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """The CPU paths, also on a machine with a GPU (where `add_at` would always scatter)."""
    monkeypatch.setattr(_add_at, "_cpu_only", lambda: True)
    with tf.device("/CPU:0"):
        yield


def example(seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=SHAPE).astype(np.float32)
    # Repeated classes in a row (as a label among the teacher's top k) must add up.
    indices = rng.integers(0, SHAPE[-1], size=SHAPE[:-1] + (K,)).astype(np.int32)
    indices[..., 1] = indices[..., 0]
    amounts = rng.normal(size=SHAPE[:-1] + (K,)).astype(np.float32)
    return rows, indices, amounts


def np_add_at(rows, indices, amounts):
    want = rows.astype(np.float64)
    lead = np.indices(indices.shape)[:-1]
    np.add.at(want, (*lead, indices), amounts)
    return want


def run(compile_as, rows, indices, amounts, signature=None):
    def fn(rows, indices, amounts):
        return _add_at.add_at(rows * 1.0, indices, amounts)  # A fresh tensor, as callers pass.

    if compile_as == "graph":
        fn = tf.function(fn, input_signature=signature)
    elif compile_as == "xla":
        fn = tf.function(fn, jit_compile=True)
    return fn(tf.constant(rows), tf.constant(indices), tf.constant(amounts)).numpy()


def op_types(rows, indices, amounts, signature=None):
    fn = tf.function(lambda r, i, a: _add_at.add_at(r * 1.0, i, a), input_signature=signature)
    graph = fn.get_concrete_function(*(tf.constant(v) for v in (rows, indices, amounts))).graph
    definition = graph.as_graph_def()
    types = {node.op for node in definition.node}
    for function in definition.library.function:  # The branches of a `tf.cond`.
        types |= {node.op for node in function.node_def}
    return types


DYNAMIC = [
    tf.TensorSpec([None, None, SHAPE[-1]], tf.float32),
    tf.TensorSpec([None, None, K], tf.int32),
    tf.TensorSpec([None, None, K], tf.float32),
]


@pytest.mark.parametrize("compile_as", ["eager", "graph", "xla"])
def test_add_at_matches_numpy_with_repeated_classes(compile_as):
    rows, indices, amounts = example()
    got = run(compile_as, rows, indices, amounts)
    np.testing.assert_allclose(got, np_add_at(rows, indices, amounts), rtol=1e-6, atol=1e-6)


def test_add_at_adds_in_place_on_cpu_and_scatters_where_a_gpu_could_run_it(monkeypatch):
    values = example()
    assert "InplaceAdd" in op_types(*values)
    assert "TensorScatterAdd" not in op_types(*values)
    monkeypatch.setattr(_add_at, "_cpu_only", lambda: False)
    assert "InplaceAdd" not in op_types(*values)
    got = run("graph", *values)
    np.testing.assert_allclose(got, np_add_at(*values), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("signature", [None, DYNAMIC], ids=["static", "dynamic"])
def test_rows_past_int32_indices_take_the_scatter(monkeypatch, signature):
    values = example()
    size = int(np.prod(SHAPE))
    for limit in (size + 1, size):  # Fits; one element too many.
        monkeypatch.setattr(_add_at, "INT32_LIMIT", limit)
        got = run("graph", *values, signature=signature)
        np.testing.assert_allclose(got, np_add_at(*values), rtol=1e-6, atol=1e-6)
    types = op_types(*values, signature=signature)
    if signature is None:  # Known size: one path, chosen when tracing.
        assert "TensorScatterAdd" in types and "InplaceAdd" not in types
    else:  # Unknown size: both, chosen by the size of each batch.
        assert {"TensorScatterAdd", "InplaceAdd"} <= types


def test_rows_folded_into_a_constant_are_not_changed_from_call_to_call():
    _, indices, amounts = example()

    @tf.function
    def constant_rows(amounts):  # Grappler folds `tf.ones(SHAPE) * 2.0` into one constant.
        return _add_at.add_at(tf.ones(SHAPE) * 2.0, tf.constant(indices), amounts)

    want = np_add_at(np.full(SHAPE, 2.0), indices, amounts)
    for _ in range(3):
        got = constant_rows(tf.constant(amounts)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_only_rows_known_at_run_time_are_added_in_place():
    rows, indices, amounts = example()
    arguments = [tf.constant(value) for value in (rows, indices, amounts)]

    def types(fn, *args):
        definition = tf.function(fn).get_concrete_function(*args).graph.as_graph_def()
        return {node.op for node in definition.node}

    folded = types(lambda: _add_at.add_at(tf.ones(SHAPE) * 2.0, *arguments[1:]))
    assert "InplaceAdd" not in folded and "TensorScatterAdd" in folded
    assert "InplaceAdd" in types(lambda r: _add_at.add_at(r * 2.0, *arguments[1:]), arguments[0])
    drawn = types(lambda: _add_at.add_at(tf.random.uniform(SHAPE) * 2.0, *arguments[1:]))
    assert "InplaceAdd" in drawn  # A stateful op: never folded.

    def in_a_branch(flag):  # A `tf.cond` branch's rows, captured from outside the branch.
        outer = tf.ones(SHAPE) * 2.0
        return tf.cond(flag, lambda: _add_at.add_at(outer * 1.0, *arguments[1:]), lambda: outer)

    graph = tf.function(in_a_branch).get_concrete_function(tf.constant(True)).graph
    branches = {node.op for f in graph.as_graph_def().library.function for node in f.node_def}
    assert "InplaceAdd" not in branches and "TensorScatterAdd" in branches
