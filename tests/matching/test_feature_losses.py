import numpy as np
import pytest

from keras_distill.matching import feature_losses as fl


@pytest.fixture
def features():
    rng = np.random.default_rng(1)
    return rng.normal(size=(6, 5, 5, 4)).astype("float32"), rng.normal(size=(6, 5, 5, 4)).astype(
        "float32"
    )


def flat(a):
    return a.reshape(len(a), -1).astype(np.float64)


def huber(d):
    return np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5)


def test_mse_and_cosine(features):
    s, t = features
    np.testing.assert_allclose(fl.feature_mse(s, t), ((flat(s) - flat(t)) ** 2).mean(-1), rtol=1e-5)
    cos = (
        (flat(s) * flat(t)).sum(-1)
        / np.linalg.norm(flat(s), axis=-1)
        / np.linalg.norm(flat(t), axis=-1)
    )
    np.testing.assert_allclose(fl.feature_cosine(s, t), 1 - cos, rtol=1e-5, atol=1e-6)


def np_rkd_distance(s, t):
    def psi(f):
        d = np.linalg.norm(f[:, None] - f[None], axis=-1)
        off = ~np.eye(len(f), dtype=bool)
        return d / d[off].mean(), off

    ps, off = psi(flat(s))
    pt, _ = psi(flat(t))
    return huber(ps - pt)[off].mean()


def np_rkd_angle(s, t):
    def angles(f):
        e = f[None, :, :] - f[:, None, :]
        norm = np.linalg.norm(e, axis=-1, keepdims=True)
        e = np.divide(e, norm, out=np.zeros_like(e), where=norm > 0)
        return np.einsum("ijd,ikd->ijk", e, e)

    return huber(angles(flat(s)) - angles(flat(t))).mean()


def test_rkd_distance_and_angle(features):
    s, t = features
    np.testing.assert_allclose(fl.rkd_distance(s, t), np_rkd_distance(s, t), rtol=1e-4)
    np.testing.assert_allclose(fl.rkd_angle(s, t), np_rkd_angle(s, t), rtol=1e-4, atol=1e-6)
    # Relations compare examples with each other, so feature widths may differ.
    assert np.isfinite(fl.rkd_distance(s[..., :2], t).numpy())


def test_attention_transfer(features):
    s, t = features

    def q(f):
        m = (f.astype(np.float64) ** 2).mean(-1).reshape(len(f), -1)
        return m / np.linalg.norm(m, axis=-1, keepdims=True)

    np.testing.assert_allclose(
        fl.attention_transfer(s, t), ((q(s) - q(t)) ** 2).mean(-1), rtol=1e-5
    )
    np.testing.assert_allclose(fl.attention_transfer(s[..., :1], t).shape, (6,))


def test_similarity_preserving(features):
    s, t = features

    def g(f):
        f = flat(f)
        gram = f @ f.T
        return gram / np.linalg.norm(gram, axis=-1, keepdims=True)

    expected = ((g(s) - g(t)) ** 2).sum() / 36
    np.testing.assert_allclose(fl.similarity_preserving(s, t), expected, rtol=1e-5)


def softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


@pytest.fixture
def attention():
    rng = np.random.default_rng(2)
    mask = np.ones((3, 5, 5), bool)
    mask[0, :, 3:] = False  # padded keys of example 0
    mask[0, 3:, :] = False  # padded queries of example 0
    s = softmax(rng.normal(size=(3, 2, 5, 5)) + np.where(mask[:, None], 0, -1e9))
    t = softmax(rng.normal(size=(3, 2, 5, 5)) + np.where(mask[:, None], 0, -1e9))
    return s.astype("float32"), t.astype("float32"), mask


def test_attention_kl_respects_padding(attention):
    s, t, mask = attention
    expected = []
    for b in range(3):
        rows = [
            (
                t[b, h, q]
                * (np.log(np.maximum(t[b, h, q], 1e-12)) - np.log(np.maximum(s[b, h, q], 1e-12)))
            )[mask[b, q]].sum()
            for h in range(2)
            for q in range(5)
            if mask[b, q].any()
        ]
        expected.append(np.mean(rows))
    np.testing.assert_allclose(fl.attention_kl(s, t, mask), expected, rtol=1e-4, atol=1e-6)


def test_attention_mse_respects_padding(attention):
    s, t, mask = attention
    cells = np.broadcast_to(mask[:, None], s.shape)
    expected = [((s[b] - t[b]) ** 2)[cells[b]].mean() for b in range(3)]
    np.testing.assert_allclose(fl.attention_mse(s, t, mask), expected, rtol=1e-5)
    no_mask = ((s - t) ** 2).reshape(3, -1).mean(-1)
    np.testing.assert_allclose(fl.attention_mse(s, t), no_mask, rtol=1e-5)
