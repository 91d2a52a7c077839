"""What a real camera crop does to a face, applied to generated faces so the encoder learns to undo it.

``camera_crop(images, rng)`` takes ``(B, 3, 64, 64)`` float32 RGB in [-1, 1] (the generator's output)
and returns the same shape after, per sample and with seeded random strengths:

- alignment error: a small similarity warp (rotation, scale, shift; landmark jitter of the
  detector and the tilt a 5-point similarity leaves), reflected at the border;
- softness of a downscaled real photo: down to 24-64 px and back up (antialiased), then blur;
- colour: brightness, contrast, saturation, white balance (per-channel gain), gamma;
- sensor noise (Gaussian);
- JPEG at quality 30-90 (through OpenCV; not differentiable, so it is applied to the input only).

Targets (the clean image and its code) are never augmented.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def similarity_warp(images: torch.Tensor, rng: np.random.Generator, max_degrees: float = 8.0,
                    max_scale: float = 0.07, max_shift: float = 0.05) -> torch.Tensor:
    """Random rotation (degrees), scale (relative) and shift (fraction of the side) per sample."""
    b = images.shape[0]
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, b))
    scale = 1.0 + rng.uniform(-max_scale, max_scale, b)
    shift = rng.uniform(-max_shift, max_shift, (b, 2)) * 2.0  # grid units: the side is 2
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(torch.as_tensor(theta, dtype=images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def soften(images: torch.Tensor, rng: np.random.Generator, min_side: int = 24) -> torch.Tensor:
    """Down to a random side in ``[min_side, S]`` and back (per group of samples), then a light blur."""
    size = images.shape[-1]
    out = images.clone()
    sides = rng.integers(min_side, size + 1, images.shape[0])
    for side in np.unique(sides):
        idx = torch.as_tensor(np.flatnonzero(sides == side))
        if side < size:
            small = F.interpolate(images[idx], size=(int(side), int(side)), mode="bilinear", antialias=True,
                                  align_corners=False)
            out[idx] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    sigma = rng.uniform(0.0, 1.0, images.shape[0])
    blurred = gaussian_blur(out, 1.0)
    weight = torch.as_tensor(sigma, dtype=images.dtype).view(-1, 1, 1, 1)
    return out + weight * (blurred - out)  # between no blur and sigma = 1 px


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflected borders."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-(x * x) / (2 * sigma * sigma))
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def colour(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Brightness +-0.15, contrast x0.75-1.25, saturation x0.7-1.3, channel gains x0.92-1.08, gamma 0.8-1.25."""
    b = images.shape[0]

    def per_sample(lo: float, hi: float, shape: tuple[int, ...] = (1, 1, 1)) -> torch.Tensor:
        return torch.as_tensor(rng.uniform(lo, hi, (b, *shape)), dtype=images.dtype)

    x = (images + 1.0) * 0.5  # [0, 1]
    x = x.clamp(0.0, 1.0) ** per_sample(0.8, 1.25)
    grey = x.mean(dim=1, keepdim=True)
    x = grey + per_sample(0.7, 1.3) * (x - grey)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = mean + per_sample(0.75, 1.25) * (x - mean)
    x = x * per_sample(0.92, 1.08, (3, 1, 1)) + per_sample(-0.15, 0.15)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0)


def jpeg(images: torch.Tensor, rng: np.random.Generator, share: float = 0.5) -> torch.Tensor:
    """Re-encode a random ``share`` of the samples as JPEG at quality 30-90 (OpenCV)."""
    out = images.clone()
    pixels = ((images.detach().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i in np.flatnonzero(rng.random(images.shape[0]) < share):
        quality = int(rng.integers(30, 91))
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(pixels[i][..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else None
        if decoded is not None:
            decoded = decoded[..., ::-1]
            out[i] = torch.from_numpy(np.ascontiguousarray(decoded)).permute(2, 0, 1).to(images.dtype) / 127.5 - 1.0
    return out


def camera_crop(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """All of the above, in a camera's order: optics/alignment, resolution, colour, noise, compression."""
    x = similarity_warp(images, rng)
    x = soften(x, rng)
    x = colour(x, rng)
    noise = torch.as_tensor(rng.uniform(0.0, 0.04, (x.shape[0], 1, 1, 1)), dtype=x.dtype)
    x = (x + noise * torch.as_tensor(rng.standard_normal(x.shape), dtype=x.dtype)).clamp(-1.0, 1.0)
    return jpeg(x, rng)
