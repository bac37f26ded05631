import ast
import os

import numpy as np
import pytest
import tensorflow as tf

import keras_distill
from keras_distill import _keras


def test_generation_follows_the_environment():
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", "0") in ("1", "true", "yes")
    assert _keras.IS_LEGACY is legacy
    assert keras_distill.GENERATION == ("tf_keras" if legacy else "keras3")
    assert _keras.keras.__name__ == ("tf_keras" if legacy else "keras")


def test_distiller_is_a_model_of_the_active_generation():
    assert issubclass(keras_distill.Distiller, _keras.keras.Model)


def test_no_module_imports_keras_on_its_own():
    package_dir = os.path.dirname(keras_distill.__file__)
    offenders = []
    for root, _, files in os.walk(package_dir):
        for name in files:
            if not name.endswith(".py") or name == "_keras.py":
                continue
            with open(os.path.join(root, name)) as source:
                for line in source:
                    stripped = line.strip()
                    if stripped.startswith(
                        ("import keras", "import tf_keras", "from keras ", "from tf_keras")
                    ):
                        offenders.append(f"{name}: {stripped}")
    assert offenders == []


def test_every_private_keras_api_still_exists():
    """Fails loudly when a Keras release renames a private API the package uses."""
    keras = _keras.keras
    inputs = keras.Input((4, 8))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    model = keras.Model(inputs, attention(inputs, inputs))
    assert "mha" in [layer.name for layer in _keras.all_layers(model)]
    assert callable(getattr(attention, _keras.ATTENTION_METHOD))
    query = keras.ops.ones((1, 4, 2, 4)) if not _keras.IS_LEGACY else None
    if query is not None:
        output, scores = _keras.compute_attention(
            getattr(attention, _keras.ATTENTION_METHOD), query, query, query, None, False
        )
        assert tuple(scores.shape) == (1, 2, 4, 4)
        assert hasattr(attention, "_flash_attention")
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.fit(np.ones((2, 4, 8)), np.ones((2, 4, 8)), verbose=0)
    # Model.train_function: the traced step, traced again after it is dropped.
    traced = model.train_function
    assert callable(traced)
    _keras.forget_compiled_steps(model)
    assert model.train_function is None and model.test_function is None
    model.fit(np.ones((2, 4, 8)), np.ones((2, 4, 8)), verbose=0)
    assert callable(model.train_function) and model.train_function is not traced
    metric_names = [m.name for m in _keras.compiled_metric_objects(model)]
    assert metric_names, "the compiled metrics are not found"
    if not _keras.IS_LEGACY:  # `Model._compile_metrics` holds the compiled metrics.
        assert _keras.compiled_metric_objects(model) == [model._compile_metrics]
        plain = keras.Model(inputs, attention(inputs, inputs))
        plain.compile(optimizer="sgd", loss="mse")
        assert _keras.compiled_metric_objects(plain) == []

    # Layer._kernel: the variable behind the kernel property.
    dense = keras.layers.Dense(3)
    dense.build((None, 5))
    assert _keras.kernel_variable(dense, "kernel") is dense.kernel
    if not _keras.IS_LEGACY:
        assert dense._kernel is dense.kernel
    assert _keras.kernel_variable(dense, "depthwise_kernel") is None

    # The serialized functional config: `inbound_nodes` entries name the layers they read.
    first = keras.layers.Dense(4, name="first")
    second = keras.layers.Dense(4, name="second")
    added = keras.layers.Add(name="added")
    x = keras.Input((3,), name="x")
    hidden = first(x)
    graph = keras.Model(x, added([hidden, second(hidden)]))
    if not _keras.IS_LEGACY:  # layer_edges serves the Keras 3 QAT, which reads this format.
        producers, consumers = _keras.layer_edges(graph)
        assert producers == {"first": ["x"], "second": ["first"], "added": ["first", "second"]}
        assert consumers["first"] == ["second", "added"] and consumers["added"] == [None]

    assert set(_keras.PRIVATE_APIS) == {
        "Layer._flatten_layers",
        "MultiHeadAttention._compute_attention",
        "MultiHeadAttention._flash_attention",
        "Model._compile_metrics",
        "Layer._kernel",
        "Functional config inbound_nodes",
        "Tensor._keras_mask",
        "Model.train_function",
    }


def test_keras_mask_leaves_rows_out_of_compiled_metrics():
    """`Tensor._keras_mask`: the compiled metrics of both generations skip masked rows."""
    keras = _keras.keras
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    predictions = _keras.with_metric_mask(
        tf.constant([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), tf.constant([True, True, False])
    )
    model.compute_metrics(None, tf.constant([0, 1, 1]), predictions, None)
    accuracy = {m.name: m.result() for m in model.metrics if "acc" in m.name}
    if not accuracy:  # Keras 3 reports the compiled metrics through one container.
        accuracy = {k: v for k, v in model.get_metrics_result().items() if "acc" in k}
    assert [float(value) for value in accuracy.values()] == [0.5]  # 1 of the 2 unmasked rows


def test_all_layers_enters_layers_or_only_models():
    keras = _keras.keras
    inner_inputs = keras.Input((4, 8))
    attention = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    inner = keras.Model(inner_inputs, attention(inner_inputs, inner_inputs), name="inner")
    inputs = keras.Input((4, 8))
    dense = keras.layers.Dense(2, name="head")
    model = keras.Model(inputs, dense(inner(inputs)), name="outer")
    models_only = [layer.name for layer in _keras.all_layers(model, within_layers=False)]
    assert models_only == [
        inputs._keras_history[0].name,
        "inner",
        inner.layers[0].name,
        "mha",
        "head",
    ]
    everything = _keras.all_layers(model)
    assert {"inner", "mha", "head"} <= {layer.name for layer in everything}
    # The attention layer's own projections are found only by entering layers.
    assert any(layer is attention._query_dense for layer in everything)
    assert len(everything) == len({id(layer) for layer in everything})


# Modules that still read private attributes of other objects (their owners are changing them).
_PRIVATE_READS_ALLOWED = {
    "_keras.py",  # The one home of private Keras APIs.
}
# Private reads of objects that are not Keras's, each with its reason.
_OTHER_LIBRARIES_PRIVATE_READS = {
    "interpreter._get_ops_details",  # LiteRT's interpreter: its only listing of operators.
}


def _private_reads(tree):
    """`(line, text)` of each read of another object's private attribute in a module's AST.

    A private attribute starts with one underscore (dunders such as `__name__`
    are public). Reads through `self`, `cls` and names bound by an import
    (module-private helpers of this package's own modules) are allowed;
    `getattr`, `hasattr`, `setattr`, `delattr` and `object.__setattr__` with
    a name that starts with an underscore count as reads.
    """
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {alias.asname or alias.name for alias in node.names}

    def private(name):
        return name.startswith("_") and not name.startswith("__")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and (
                owner.id in ("self", "cls") or owner.id in imported
            ):
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and len(node.args) >= 2:
            function = ast.unparse(node.func)
            if function not in ("getattr", "hasattr", "setattr", "delattr", "object.__setattr__"):
                continue
            name = node.args[1]
            if isinstance(name, ast.BinOp):  # "_" + attribute
                name = name.left
            elif isinstance(name, ast.JoinedStr) and name.values:
                name = name.values[0]
            if (
                isinstance(name, ast.Constant)
                and isinstance(name.value, str)
                and private(name.value)
            ):
                found.append((node.lineno, ast.unparse(node)))
    return found


def test_private_attribute_reads_stay_in_keras_module():
    package_dir = os.path.dirname(keras_distill.__file__)
    offenders = []
    for root, _, files in os.walk(package_dir):
        for name in sorted(files):
            if not name.endswith(".py") or name in _PRIVATE_READS_ALLOWED:
                continue
            path = os.path.join(root, name)
            with open(path) as source:
                tree = ast.parse(source.read())
            relative = os.path.relpath(path, package_dir)
            offenders += [
                f"{relative}:{line}: {text}"
                for line, text in _private_reads(tree)
                if text not in _OTHER_LIBRARIES_PRIVATE_READS
            ]
    assert offenders == []


@pytest.mark.parametrize(
    "code,found",
    [
        ("model._compile_metrics", True),
        ("self.model._record", True),
        ("getattr(layer, '_kernel', None)", True),
        ("getattr(layer, '_' + name)", True),
        ("object.__setattr__(model, '_kinds', 1)", True),
        ("self._alpha", False),
        ("cls._registry", False),
        ("import losses\nlosses._REGISTRY", False),
        ("getattr(f, '__name__', '')", False),
        ("layer.kernel", False),
    ],
)
def test_private_read_rule(code, found):
    assert bool(_private_reads(ast.parse(code))) is found


def test_private_flash_attention_flag_is_still_read():
    plain = _keras.keras.layers.MultiHeadAttention(2, 4)
    assert _keras.uses_flash_attention(plain) is False
    if not _keras.IS_LEGACY:  # Keras 3 stores the choice in `_flash_attention`.
        flash = _keras.keras.layers.MultiHeadAttention(2, 4, flash_attention=True)
        assert _keras.uses_flash_attention(flash) is True
