"""``denoise``: scikit-image's bundled photographs cut into patches, plus white Gaussian noise.

As DnCNN (Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP 2017): images in [0, 1], noise standard
deviation ``sigma / 255`` with ``sigma`` on the 0-255 scale (default 25), noisy input not clipped, target
the clean patch. Patches do not overlap by default (``stride = patch size``), so the patch-level split puts
no pixel in both the training and the validation set. Nothing is downloaded: only images shipped inside
the scikit-image wheel are accepted.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import DataError

from .augment import FreshNoise
from .config import DataConfig, DatasetInfo, Preprocessing
from .options import Option
from .registry import DatasetEntry, Loaded, register
from .split import generator, split_indices, subset_indices
from .tensors import TensorPairDataset, resolve_shape

# Images whose files ship inside the scikit-image package (skimage/data/*.png|jpg): never fetched.
BUNDLED_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
DEFAULT_IMAGES = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "gravel",
)
NATURAL_SHAPE = (1, 40, 40)
OPTIONS = {
    "sigma": Option(25.0, float, "noise standard deviation on the 0-255 scale", minimum=0),
    "patch_size": Option(
        None, int, "patch height = width when the model's input is not fixed (40)", minimum=2
    ),
    "stride": Option(None, int, "patch stride (default: the patch size, no overlap)", minimum=1),
    "images": Option(None, (list, tuple), f"skimage.data images (default: {', '.join(DEFAULT_IMAGES)})"),
    "max_patches": Option(None, int, "keep a seeded random subset of at most this many patches", minimum=2),
    "channels": Option(None, int, "1 (grayscale, natural) or 3 (RGB; gray images replicated)", minimum=1),
    "fresh_noise": Option(True, bool, "training batches get a new noise draw each time (DnCNN)"),
}


@functools.lru_cache(maxsize=64)
def _image(name: str, channels: int) -> torch.Tensor:
    """One bundled image as (channels, H, W) float32 in [0, 1]."""
    import skimage.data
    from skimage.color import gray2rgb, rgb2gray, rgba2rgb
    from skimage.util import img_as_float

    image = img_as_float(getattr(skimage.data, name)())  # (H, W) or (H, W, 3|4), float64 in [0, 1]
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    if channels == 1:
        image = rgb2gray(image)[None] if image.ndim == 3 else image[None]  # (1, H, W)
    else:
        image = (image if image.ndim == 3 else gray2rgb(image)).transpose(2, 0, 1)  # (3, H, W)
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))


def _image_names(requested: Any) -> tuple[str, ...]:
    if requested is None:
        return DEFAULT_IMAGES
    unknown = [name for name in requested if name not in BUNDLED_IMAGES]
    if unknown or not requested:
        raise DataError(
            f"data 'denoise': option 'images' has unknown image {(unknown or [None])[0]!r} "
            f"(bundled: {', '.join(BUNDLED_IMAGES)})"
        )
    return tuple(requested)


def patches(image: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """All (C, height, width) patches of a (C, H, W) image at ``stride``, row-major: (L, C, height, width)."""
    channels = image.shape[0]
    if image.shape[1] < height or image.shape[2] < width:
        return image.new_zeros((0, channels, height, width))
    columns = F.unfold(image[None], kernel_size=(height, width), stride=stride)  # (1, C*h*w, L)
    return columns[0].T.reshape(-1, channels, height, width)  # (L, C, h, w)


def load(config: DataConfig, input_shape: tuple[int, int, int] | None, options: dict[str, Any]) -> Loaded:
    channels, height, width = resolve_shape(
        "denoise", NATURAL_SHAPE, input_shape, options["patch_size"], options["channels"]
    )
    if channels not in (1, 3):
        raise DataError(f"data 'denoise': images have 1 or 3 channels, the model asks for {channels}")
    stride = options["stride"] or min(height, width)
    names = _image_names(options["images"])
    clean = torch.cat(
        [patches(_image(name, channels), height, width, stride) for name in names]
    )  # (N, C, h, w)
    clean = clean[subset_indices(len(clean), options["max_patches"], config.seed, "denoise/patches")]
    if len(clean) < 2:
        raise DataError(
            f"data 'denoise': {len(clean)} patch(es) of {height}x{width} from images {', '.join(names)}"
        )
    train_index, val_index = split_indices(len(clean), config.val_fraction, config.seed)
    noise_std = options["sigma"] / 255.0

    def noisy(targets: torch.Tensor, stream: str) -> torch.Tensor:
        noise = torch.randn(targets.shape, generator=generator(config.seed, stream))  # (n, C, h, w)
        return (targets + noise_std * noise).contiguous()

    train_clean, val_clean = clean[train_index].contiguous(), clean[val_index].contiguous()
    augment = FreshNoise(noise_std) if options["fresh_noise"] else None
    train = TensorPairDataset(noisy(train_clean, "denoise/noise/train"), train_clean, augment)
    val = TensorPairDataset(noisy(val_clean, "denoise/noise/val"), val_clean)
    info = DatasetInfo(
        task="denoising",
        input_shape=(channels, height, width),
        num_classes=None,
        class_names=None,
        metrics=("psnr", "ssim"),
        train_size=len(train),
        val_size=len(val),
        preprocessing=Preprocessing(
            color="grayscale" if channels == 1 else "rgb",
            resize=False,
            output="clean image",
            notes=(
                f"the input is a noisy image in [0, 1] (Gaussian noise of standard deviation "
                f"{options['sigma']:g}/255, not clipped); the model returns the clean image (clip it to [0, 1])",
                f"do not resize a noisy image (it changes the noise); trained on {height}x{width} patches",
            ),
        ),
    )
    return train, val, info


register(DatasetEntry("denoise", "scikit-image's bundled photographs as noisy patches", OPTIONS, load))
