"""The model-zoo tier: real architectures, random weights, small inputs, no downloads.

Every test here is marked `zoo`. A test records what it showed working with
the `record` fixture; with `ZOO_RESULTS=<folder>` set, the run writes
`<folder>/<generation>.json`, which `tests/zoo/make_table.py` turns into the
table of `docs/models.md`.
"""

import json
import os

import pytest

from keras_distill._keras import GENERATION

_RESULTS = {}


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.zoo)


@pytest.fixture
def record():
    """`record(architecture, feature)`: call after the feature's assertions passed."""

    def add(architecture, feature):
        _RESULTS.setdefault(architecture, set()).add(feature)

    return add


def pytest_sessionfinish(session, exitstatus):
    folder = os.environ.get("ZOO_RESULTS")
    if not folder or not _RESULTS:
        return
    os.makedirs(folder, exist_ok=True)
    results = {name: sorted(features) for name, features in sorted(_RESULTS.items())}
    with open(os.path.join(folder, f"{GENERATION}.json"), "w") as stream:
        json.dump(results, stream, indent=2)
        stream.write("\n")
