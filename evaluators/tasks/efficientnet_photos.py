"""The photographs that ship inside installed packages, cut into seeded crops.

Sixteen real photographs: fourteen from scikit-image's ``skimage/data`` folder and the two of
scikit-learn's ``load_sample_images``. Each is read from its file in the installed package
(nothing is downloaded); greyscale ones are stacked to three channels. The other images of
``skimage/data`` are left out: microscopy and medical images (``cell``, ``ihc``, ``retina``,
``microaneurysms``), drawings and synthetic images (``color``, ``phantom``, ``chessboard_*``,
``logo``, ``horse``), a scanned page (``page``), tiny images (``lfw_subset``,
``no_time_for_that_tiny``, ``multipage*``), and ``motorcycle_right``, the other half of the
``motorcycle_left`` stereo pair (nearly the same picture: it would put one scene on both sides
of a split).

Splits are **by photograph** (:data:`SPLITS`): no photograph gives crops to two splits.
A crop is a square whose side is a uniform 0.5-1.0 of the photograph's shorter side, at a
uniform position, mirrored left-right half of the time, resized (bilinear, antialiased) to
``resolution`` pixels, and normalised as ``(pixel - 127) / 128``.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: The photographs by split: each appears in exactly one.
SPLITS: dict[str, tuple[str, ...]] = {
    # the float model is confident on few crops of the three textures (grass, gravel, the
    # Hubble deep field): they train, where the distillation reads every crop's logits
    "train": (
        "astronaut",
        "brick",
        "camera",
        "grass",
        "gravel",
        "hubble_deep_field",
        "motorcycle_left",
        "text",
    ),
    "val": ("coffee", "china", "coins", "clock_motion"),
    "test": ("chelsea", "rocket", "flower", "moon"),
}

#: Files in ``skimage/data``, by photograph name.
_SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "brick": "brick.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "clock_motion": "clock_motion.png",
    "coffee": "coffee.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "moon": "moon.png",
    "motorcycle_left": "motorcycle_left.png",
    "rocket": "rocket.jpg",
    "text": "text.png",
}
#: Files of scikit-learn's sample images, by photograph name.
_SKLEARN_FILES = {"china": "china.jpg", "flower": "flower.jpg"}
#: Every photograph the task uses.
PHOTOS: tuple[str, ...] = tuple(sorted(_SKIMAGE_FILES | _SKLEARN_FILES))
#: A crop's side as a share of the photograph's shorter side.
SCALE = (0.5, 1.0)
#: Crops are the same whatever the study's seed (every study scores the same rows).
DATA_SEED = 0


def photo_path(name: str) -> Path:
    """The photograph's file inside the installed scikit-image or scikit-learn."""
    if name in _SKIMAGE_FILES:
        import skimage

        return Path(skimage.__file__).parent / "data" / _SKIMAGE_FILES[name]
    if name in _SKLEARN_FILES:
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images" / _SKLEARN_FILES[name]
    raise ValueError(f"Unknown photograph {name!r}; choose from {list(PHOTOS)}.")


@cache
def load_photo(name: str) -> np.ndarray:
    """The photograph as ``(H, W, 3)`` uint8 RGB (greyscale stacked, alpha dropped)."""
    from skimage.io import imread

    path = photo_path(name)
    if not path.exists():
        raise FileNotFoundError(
            f"Photograph {name!r} is missing from the installed package ({path}); "
            "reinstall scikit-image / scikit-learn."
        )
    image = np.asarray(imread(path))
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:
        raise ValueError(f"Photograph {name!r} is {image.dtype}, expected uint8.")
    return np.ascontiguousarray(image)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """EfficientNet-Lite's input: ``(pixel - 127) / 128`` for 0-255 pixels."""
    return (pixels.float() - 127.0) / 128.0


def photo_tensor(name: str, resolution: int) -> torch.Tensor:
    """The whole photograph resized to ``resolution`` square, normalised, ``(1, 3, r, r)``."""
    x = torch.from_numpy(load_photo(name)).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True)
    return normalise(x)


def _generator(split: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{DATA_SEED}-{split}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def crops(split: str, count: int, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """``count`` seeded crops of the split's photographs (taken in turn), and each one's source.

    Returns ``(images, sources)``: ``images`` is ``(count, 3, resolution, resolution)`` float32,
    normalised; ``sources[i]`` names the photograph crop ``i`` came from. The same arguments
    give the same crops on every machine.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose from {list(SPLITS)}.")
    names = SPLITS[split]
    rng = _generator(split)
    out = torch.empty(count, 3, resolution, resolution)
    sources = []
    for i in range(count):
        name = names[i % len(names)]
        image = load_photo(name)
        h, w = image.shape[:2]
        side = max(1, round(rng.uniform(*SCALE) * min(h, w)))
        top = int(rng.integers(0, h - side + 1))
        left = int(rng.integers(0, w - side + 1))
        flip = bool(rng.random() < 0.5)
        patch = torch.from_numpy(image[top : top + side, left : left + side]).permute(2, 0, 1)
        if flip:
            patch = patch.flip(-1)
        patch = F.interpolate(
            patch[None].float(), size=(resolution, resolution), mode="bilinear", antialias=True
        )
        out[i] = normalise(patch[0])
        sources.append(name)
    return out, sources
