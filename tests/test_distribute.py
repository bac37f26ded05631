"""Distributed training gives the single-device result for the same global batch."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import assert_message
from helpers import subprocess_env

from keras_distill._keras import IS_LEGACY

# Every test here starts Python processes with their own devices or cluster settings.
pytestmark = pytest.mark.subprocess

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_run.py")


def run(mode, out, extra_env=None, wait=True):
    env = subprocess_env(TF_CPP_MIN_LOG_LEVEL="3", **(extra_env or {}))
    process = subprocess.Popen(
        [sys.executable, SCRIPT, mode, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if wait:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output[-3000:]
    return process


def load(path):
    with np.load(path) as result:
        weights = [result[f"w{i}"] for i in range(sum(k.startswith("w") for k in result.files))]
        return result["loss"], weights, int(result["replicas"])


def assert_same_training(single, distributed):
    loss, weights, _ = single
    got_loss, got_weights, replicas = distributed
    assert replicas == 2
    np.testing.assert_allclose(got_loss, loss, rtol=1e-5)
    for a, b in zip(weights, got_weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "single.npz"
    run("single", out)
    return load(out)


def test_mirrored_strategy_on_two_cpus_matches_one_device(single_device, tmp_path):
    run("mirrored", tmp_path / "mirrored.npz")
    assert_same_training(single_device, load(tmp_path / "mirrored.npz"))


def test_positions_under_mirrored_strategy_give_global_means(tmp_path):
    """Each replica of a batch counts a different number of tokens; the means stay global."""
    env = {"POSITIONS": "1"}
    for mode in ("single", "mirrored"):
        run(mode, tmp_path / f"{mode}.npz", env)
    assert_same_training(load(tmp_path / "single.npz"), load(tmp_path / "mirrored.npz"))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(
    not IS_LEGACY, reason="MultiWorkerMirroredStrategy fit() needs tf_keras (see docs)"
)
def test_two_local_workers_match_one_device(single_device, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"worker{index}.npz"
        workers.append(
            run("multiworker", out, {"TF_CONFIG": config, "WORKER_INDEX": str(index)}, wait=False)
        )
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    assert_same_training(single_device, load(tmp_path / "worker0.npz"))


@pytest.mark.skipif(IS_LEGACY, reason="the limitation is specific to Keras 3")
def test_keras3_multiworker_limitation_is_reported(tmp_path):
    out = tmp_path / "mw.npz"
    run("multiworker", out)
    message = open(str(out) + ".error").read()
    assert_message(
        message,
        "MultiWorkerMirroredStrategy does not work with Keras 3's fit()",
        "keras-team/keras#20585",
        "Set TF_USE_LEGACY_KERAS=1",
        "Received: strategy=MultiWorkerMirroredStrategy",
    )


def test_nan_mid_run_under_mirrored_strategy_stops_as_on_one_device(tmp_path):
    # (XLA with a MirroredStrategy over logical CPUs does not run in TensorFlow itself.)
    env = {"NAN_ROW": "70"}  # Row 70: global batch 2.
    for mode in ("single", "mirrored"):
        run(mode, tmp_path / f"{mode}.npz", env)
        message = open(tmp_path / f"{mode}.npz.error").read()
        assert message.startswith("`x` is NaN or Inf in epoch 0, batch 2 (training step 2), row ")
    single, mirrored = load(tmp_path / "single.npz"), load(tmp_path / "mirrored.npz")
    assert all(np.all(np.isfinite(w)) for w in mirrored[1])
    assert_same_training(single, mirrored)
