"""Paired image/label augmentation for training: geometric moves both, photometric the image.

Works on the tensors `dataset.reader.LaneDataset` returns (image 3xHxW normalised with the
dataset's mean/std; target 1xHxW float {0, 1} for the binary task or HxW int64 class
indices for the multi-class one), after they are made, so one recipe serves every task.

- Geometric (applied to image and target with the same matrix): horizontal flip, then one
  affine resample combining scale (zoom in = crop, zoom out = border), translation and a
  small rotation about the centre. The image is resampled bilinearly, the target with
  nearest neighbour, so labels stay class ids and never blend. Pixels that come from
  outside the frame are black in the image and "not lane" (binary) or ignored
  (multi-class, IGNORE_INDEX) in the target.
- Photometric (image only): brightness, contrast, saturation, a hue-ish chroma rotation
  (in YIQ space), Gaussian blur, Gaussian noise; done in [0, 1] RGB, clamped, normalised
  again.

Horizontal flip and the classes: in the binary task, lane marking stays lane marking.
CARLA's semantic tags have no left/right classes (no "left line" vs "right line"), so in the
multi-class task a flip maps every class to itself too: there is nothing to swap. What a
flip does change is the scene's handedness: right-hand traffic becomes left-hand traffic
(the yellow centre line moves to the right). Labels stay correct; set ``flip_p=0`` if the
model must learn which side the centre line is on.

Determinism: every random number comes from the `torch.Generator` passed in. In training,
`AugmentedDataset` seeds one generator per (seed, epoch, sample index), so the augmented
data does not depend on the number of loader workers or on the order samples are drawn,
and a resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

IGNORE_INDEX = 255  # dataset.reader.IGNORE_INDEX: multi-class pixels that count nowhere

# RGB <-> YIQ (NTSC): Y is luma, (I, Q) the chroma plane a hue shift rotates.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random changes; a range of 0 (or a probability of 0) turns one off.

    Defaults are mild: lanes are thin, and a strong zoom out or rotation makes far
    markings sub-pixel, which teaches the model nothing it will see from the car.
    """

    flip_p: float = 0.5  # probability of a horizontal flip
    scale: tuple[float, float] = (0.9, 1.15)  # zoom factor range (>1 crops, <1 adds a border)
    translate: float = 0.05  # max shift, as a fraction of width/height
    rotate_deg: float = 4.0  # max rotation either way [deg]
    brightness: float = 0.35  # factor in [1 - b, 1 + b]
    contrast: float = 0.3  # factor in [1 - c, 1 + c]
    saturation: float = 0.4  # factor in [1 - s, 1 + s]
    hue: float = 0.05  # chroma rotation, fraction of a full turn, either way
    blur_p: float = 0.25  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.3, 1.0)  # [px]
    noise_p: float = 0.4  # probability of Gaussian noise
    noise_std: float = 0.03  # max noise std, in [0, 1] intensity units


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _chance(g: torch.Generator, p: float) -> bool:
    return p > 0 and float(torch.rand((), generator=g)) < p


def affine_theta(
    height: int, width: int, scale: float = 1.0, angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0
) -> torch.Tensor:
    """2x3 matrix for `F.affine_grid`: zoom by `scale`, rotate by `angle_deg` about the
    centre and shift by (tx, ty) fractions of the width/height, in output-to-input form.

    Built in centred pixel units so that a rotation stays a rotation on non-square images.
    """
    a = math.radians(angle_deg)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
    half = torch.tensor([width / 2.0, height / 2.0], dtype=torch.float64)
    linear = torch.diag(1 / half) @ (rot / scale) @ torch.diag(half)  # normalised -> normalised
    shift = torch.tensor([-2.0 * tx, -2.0 * ty], dtype=torch.float64)  # output moves by +t
    return torch.cat([linear, shift[:, None]], dim=1).to(torch.float32)


def warp_pair(
    rgb: torch.Tensor, target: torch.Tensor, theta: torch.Tensor, multiclass: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample image (bilinear, black outside) and target (nearest) with the same `theta`."""
    h, w = rgb.shape[-2:]
    grid = F.affine_grid(theta[None], [1, 1, h, w], align_corners=False)
    rgb = F.grid_sample(rgb[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    if multiclass:
        # Sample class + 1 so that 0 marks "came from outside the frame" -> IGNORE_INDEX.
        shifted = (target.to(torch.float32) + 1)[None, None]
        out = F.grid_sample(shifted, grid, mode="nearest", padding_mode="zeros", align_corners=False)[0, 0]
        out = out.round().to(torch.int64) - 1
        target = torch.where(out < 0, torch.full_like(out, IGNORE_INDEX), out)
    else:
        target = F.grid_sample(target[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
    return rgb, target


def gaussian_blur(rgb: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 3xHxW image (reflect padding, kernel radius 2 sigma)."""
    radius = max(1, math.ceil(2 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=rgb.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    img = F.pad(rgb[None], (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    img = F.conv2d(img, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)
    return img[0]


def color_jitter(rgb: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Brightness, contrast, saturation and hue-ish changes of a [0, 1] 3xHxW image."""
    b = _uniform(g, 1 - cfg.brightness, 1 + cfg.brightness)
    c = _uniform(g, 1 - cfg.contrast, 1 + cfg.contrast)
    s = _uniform(g, 1 - cfg.saturation, 1 + cfg.saturation)
    h = _uniform(g, -cfg.hue, cfg.hue) * 2 * math.pi
    yiq = torch.einsum("ij,jhw->ihw", _RGB2YIQ, rgb * b)
    luma = yiq[0]
    yiq[0] = (luma - luma.mean()) * c + luma.mean()
    rot = torch.tensor([[math.cos(h), -math.sin(h)], [math.sin(h), math.cos(h)]], dtype=rgb.dtype) * s
    yiq[1:] = torch.einsum("ij,jhw->ihw", rot, yiq[1:])
    return torch.einsum("ij,jhw->ihw", _YIQ2RGB, yiq)


class PairedAugment:
    """``(image, target, generator) -> (image, target)`` with the changes of `AugmentConfig`.

    `mean`/`std` are the dataset's normalisation: photometric changes happen in [0, 1]
    RGB, so the image is un-normalised first and normalised again at the end.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(
        self, image: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, g = self.config, generator
        multiclass = target.dim() == 2
        rgb = image * self.std + self.mean
        if _chance(g, cfg.flip_p):
            rgb, target = rgb.flip(-1), target.flip(-1)
        scale = _uniform(g, *cfg.scale)
        angle = _uniform(g, -cfg.rotate_deg, cfg.rotate_deg)
        tx = _uniform(g, -cfg.translate, cfg.translate)
        ty = _uniform(g, -cfg.translate, cfg.translate)
        if (scale, angle, tx, ty) != (1.0, 0.0, 0.0, 0.0):
            theta = affine_theta(rgb.shape[-2], rgb.shape[-1], scale, angle, tx, ty)
            rgb, target = warp_pair(rgb, target, theta, multiclass)
        rgb = color_jitter(rgb, g, cfg)
        if _chance(g, cfg.blur_p):
            rgb = gaussian_blur(rgb, _uniform(g, *cfg.blur_sigma))
        if _chance(g, cfg.noise_p):
            rgb = rgb + torch.randn(rgb.shape, generator=g) * _uniform(g, 0.0, cfg.noise_std)
        rgb = rgb.clamp(0, 1)
        return ((rgb - self.mean) / self.std).contiguous(), target.contiguous()


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of one sample's generator: independent streams per (seed, epoch, index)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class AugmentedDataset(Dataset):
    """A dataset whose samples pass through `augment`, with a generator per (seed, epoch, index).

    Call `set_epoch` before each epoch (with non-persistent loader workers, which copy the
    dataset when the epoch's iteration starts).
    """

    def __init__(self, dataset: Dataset, augment: PairedAugment, seed: int) -> None:
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.dataset[index]
        g = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        return self.augment(image, target, g)


__all__ = [
    "AugmentConfig",
    "AugmentedDataset",
    "PairedAugment",
    "affine_theta",
    "color_jitter",
    "gaussian_blur",
    "sample_seed",
    "warp_pair",
]
