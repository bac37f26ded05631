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

# Every test here starts Python processes with their own devices or cluster settings (the
# single-device reference runs in this process).
pytestmark = pytest.mark.subprocess

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_run.py")


def run(mode, out_dir, cases="plain", extra_env=None, wait=True):
    """Runs `cases` under `mode` in one fresh process, each into `out_dir/CASE.npz`."""
    env = subprocess_env(TF_CPP_MIN_LOG_LEVEL="3", **(extra_env or {}))
    process = subprocess.Popen(
        [sys.executable, SCRIPT, mode, str(out_dir), cases],
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


CASES = "plain,positions,nan"


@pytest.fixture(scope="module")
def single_device(tmp_path_factory):
    """The folder of every case's results on one device, computed in this process."""
    import distributed_run

    out_dir = tmp_path_factory.mktemp("single")
    distributed_run.main("single", str(out_dir), CASES)
    return out_dir


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """The same cases under a MirroredStrategy over two logical CPUs, in one process."""
    out_dir = tmp_path_factory.mktemp("mirrored")
    run("mirrored", out_dir, CASES)
    return out_dir


def test_mirrored_strategy_on_two_cpus_matches_one_device(single_device, mirrored):
    assert_same_training(load(single_device / "plain.npz"), load(mirrored / "plain.npz"))


def test_positions_under_mirrored_strategy_give_global_means(single_device, mirrored):
    """Each replica of a batch counts a different number of tokens; the means stay global."""
    assert_same_training(load(single_device / "positions.npz"), load(mirrored / "positions.npz"))


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
        out_dir = tmp_path / f"worker{index}"
        out_dir.mkdir()
        env = {"TF_CONFIG": config, "WORKER_INDEX": str(index)}
        workers.append(run("multiworker", out_dir, extra_env=env, wait=False))
    for worker in workers:
        output, _ = worker.communicate(timeout=300)
        assert worker.returncode == 0, output[-3000:]
    assert_same_training(load(single_device / "plain.npz"), load(tmp_path / "worker0/plain.npz"))


@pytest.mark.skipif(IS_LEGACY, reason="the limitation is specific to Keras 3")
def test_keras3_multiworker_limitation_is_reported(tmp_path):
    run("multiworker", tmp_path)
    message = open(tmp_path / "plain.npz.error").read()
    assert_message(
        message,
        "MultiWorkerMirroredStrategy does not work with Keras 3's fit()",
        "keras-team/keras#20585",
        "Set TF_USE_LEGACY_KERAS=1",
        "Received: strategy=MultiWorkerMirroredStrategy",
    )


def test_nan_mid_run_under_mirrored_strategy_stops_as_on_one_device(single_device, mirrored):
    # (XLA with a MirroredStrategy over logical CPUs does not run in TensorFlow itself.)
    for out_dir in (single_device, mirrored):
        message = open(out_dir / "nan.npz.error").read()
        assert message.startswith("`x` is NaN or Inf in epoch 0, batch 2 (training step 2), row ")
    single, distributed = load(single_device / "nan.npz"), load(mirrored / "nan.npz")
    assert all(np.all(np.isfinite(w)) for w in distributed[1])
    assert_same_training(single, distributed)
