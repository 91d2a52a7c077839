"""Key material pinned to literal values: the same secret and salt must give the same mixer map forever.

A change of stream name, Haar sign convention, transpose or whitening would silently give every
protected face of every site a new identity; these golden values make it fail instead. Computed
once with ``anonymixer/keys/v2`` and frozen (float32, so LAPACK's last float64 bits do not show).
"""

import numpy as np
import pytest

from anonymixer import codestats
from anonymixer.keymaterial import haar_orthogonal, key_material, template_projection
from anonymixer.keys import Key

KEY = Key(bytes(range(32)))
SALT = b"mixer-test"
GOLDEN_ROTATE = [[0.02310696, 0.63205898, 0.77416140, 0.02533046],
                 [0.09395478, -0.03298295, -0.00843171, 0.99499422],
                 [0.96812087, -0.19094485, 0.13016164, -0.09664380],
                 [0.23104239, 0.75030231, -0.61940378, -0.00219396]]
GOLDEN_PROJECT = [[-0.36547014, 0.61109698, 0.48555329, 0.11798158],
                  [0.22045536, 0.03410176, 0.01001036, 0.96348351],
                  [0.23996767, -0.34017476, -0.27288029, 0.07943484],
                  [-0.01930206, 0.05813967, 0.04509814, 0.07268208]]
GOLDEN_PROJECT_OFFSET = [0.51977515, -0.36269820, 0.87569475, -0.11519096]


def test_golden_rotate_material():
    material = key_material(KEY, SALT, "rotate", codestats.identity(4), 2)
    np.testing.assert_allclose(material.matrix, GOLDEN_ROTATE, rtol=0, atol=1e-6)
    assert not material.offset.any()  # identity statistics: mu = 0, so b = mu - mu M = 0


def test_golden_project_material():
    material = key_material(KEY, SALT, "project", codestats.identity(4), 2, rank=2)
    np.testing.assert_allclose(material.matrix, GOLDEN_PROJECT, rtol=0, atol=1e-6)
    np.testing.assert_allclose(material.offset, [GOLDEN_PROJECT_OFFSET] * 2, rtol=0, atol=1e-6)


def test_the_terminals_template_map_draws_from_streams_apart_from_the_mixers():
    template = template_projection(KEY, SALT, 4, 2)
    mixer = key_material(KEY, SALT, "project", codestats.identity(4), 1, rank=2).matrix
    assert np.linalg.matrix_rank(template) == 2            # many-to-one, like the mixer's project
    assert np.abs(template - mixer).max() > 0.1            # but another map: other normals


def test_another_salt_gives_another_map():
    a = key_material(KEY, SALT, "rotate", codestats.identity(4), 2)
    b = key_material(KEY, b"another-site", "rotate", codestats.identity(4), 2)
    assert np.abs(a.matrix - b.matrix).max() > 0.1


def test_haar_orthogonal_is_unbiased_where_plain_qr_is_not():
    """Haar: E[Q_00] = 0. numpy's QR alone gives Q_00 < 0 for every draw (mean -0.52 over these 400);
    with the signs of R's diagonal moved into Q, the mean is -0.05."""
    rng = np.random.default_rng(0)
    first = [haar_orthogonal(rng.standard_normal(9), 3)[0, 0] for _ in range(400)]
    assert abs(np.mean(first)) < 0.15
    assert 0.3 < np.mean(np.array(first) > 0) < 0.7


@pytest.mark.parametrize("mode", ["rotate", "project"])
def test_key_material_is_float32_and_batch_free(mode):
    material = key_material(KEY, SALT, mode, codestats.identity(4), 3)
    assert material.matrix.shape == (4, 4) and material.offset.shape == (3, 4)
    assert material.matrix.dtype == material.offset.dtype == np.float32
