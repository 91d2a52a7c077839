"""The camera-crop augmentations that faces64's encoder trains on: shape, range, seeding."""

import numpy as np
import torch

from anonymixer.train.augment import camera_crop, gaussian_blur


def faces(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    smooth = gaussian_blur(torch.rand(n, 3, 64, 64, generator=g) * 2 - 1, 2.0)
    return (smooth * 3).clamp(-1, 1)  # colourful, in [-1, 1]


def test_camera_crop_keeps_shape_and_range_and_is_seeded():
    x = faces()
    a, b = camera_crop(x, np.random.default_rng(7)), camera_crop(x, np.random.default_rng(7))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, camera_crop(x, np.random.default_rng(8)))
    assert float((a - x).abs().mean()) > 0.01  # it does degrade
