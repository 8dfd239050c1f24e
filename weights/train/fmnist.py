"""Fashion-MNIST as the default model sees it: 28x28 grey images padded to 32x32, rendered as RGB in [-1, 1].

The data comes from Debian's `dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist/, the
original IDX files, gzip-compressed). Padding (2 pixels of background on every side) rather than resizing
keeps every garment pixel exact; 32 is the next size that the VQVAE's 4x downsampling maps to an 8x8 latent.
"""

import gzip
import os
import struct

import numpy as np
import torch

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

# The dataset's own label names, in label order (Zalando's README).
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

SIDE = 32  # image side after padding
PAD = (SIDE - 28) // 2


def _read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {arr.size} bytes of data, header says {dims}")
    return arr.reshape(dims)


def load_split(split, root=None):
    """Returns (images uint8 [N, 28, 28], labels int64 [N]) for split 'train' (60k) or 'test' (10k)."""
    root = root or os.environ.get("FASHION_MNIST_DIR", DEFAULT_DIR)
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    y = _read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    return x, y


def to_model_space(x_u8):
    """uint8 [N, 28, 28] -> float32 tensor [N, 3, 32, 32] in [-1, 1] (black background = -1)."""
    x = torch.from_numpy(np.ascontiguousarray(x_u8)).float().div_(127.5).sub_(1.0)
    x = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def to_grey01(img_rgb):
    """Model-space RGB [N, 3, H, W] in [-1, 1] -> grey [N, 1, H, W] in [0, 1] (mean of the channels)."""
    return img_rgb.mean(dim=1, keepdim=True).add(1.0).mul(0.5).clamp(0.0, 1.0)
