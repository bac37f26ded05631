"""Whether the ops being made now will be compiled by XLA."""

import tensorflow as tf
from tensorflow.python.ops import control_flow_util


def compiled_by_xla():
    """`True` inside a `jit_compile=True` function or another XLA context (e.g. TPU)."""
    if tf.executing_eagerly():
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
