"""Reads a converted webvar weights directory (weights/FORMAT.md, version 1) back into PyTorch state dicts.

Used to check, in PyTorch, exactly the weights that ship (int8/int4 tensors dequantized as FORMAT.md
defines), so the tokens the Go engine is tested against come from the shipped model, not the f32 training
checkpoint.
"""

import hashlib
import os

import msgpack
import numpy as np
import torch

BLOCK = 32


def _dequant(buf, shape, bits, scales_dtype="<f4"):
    # Rows are shape[0], K the product of the other dimensions (a conv weight [Co, Ci, kh, kw] is stored
    # as [Co, Ci*kh*kw]); the caller reshapes to the stored shape.
    if len(shape) < 2:
        raise ValueError(f"quantized tensor of shape {shape}: want rank >= 2")
    m, k = shape[0], int(np.prod(shape[1:]))
    nb = -(-k // BLOCK)
    words = m * nb * (BLOCK * bits // 32)
    codes_u32 = np.frombuffer(buf, dtype="<u4", count=words)
    # Scales are float32, or float16 where the entry says "scales": "f16"; both widen to float32 exactly.
    scales = np.frombuffer(buf, dtype=scales_dtype, count=m * nb, offset=4 * words).astype(np.float32).reshape(m, nb)
    if bits == 8:
        codes = codes_u32.view(np.int8).reshape(m, nb * BLOCK).astype(np.float32)
    else:
        b = codes_u32.view(np.uint8)
        lo, hi = (b & 0xF).astype(np.int16), (b >> 4).astype(np.int16)
        nib = np.stack([lo, hi], axis=-1).reshape(-1)
        nib = np.where(nib >= 8, nib - 16, nib).astype(np.float32)
        codes = nib.reshape(m, nb * BLOCK)
    w = codes.reshape(m, nb, BLOCK) * scales[:, :, None]
    return w.reshape(m, nb * BLOCK)[:, :k]


def load(directory):
    """Returns (manifest, {name: float32 tensor}) with the names as stored ("var.…", "vae.…")."""
    with open(os.path.join(directory, "manifest.msgpack"), "rb") as f:
        man = msgpack.unpackb(f.read(), raw=False, strict_map_key=False)
    if man.get("magic") != "WEBVAR-WEIGHTS" or man.get("version") != 1:
        raise ValueError(f"{directory}: not a webvar weights v1 directory")
    chunks = []
    for i, c in enumerate(man["chunks"]):
        with open(os.path.join(directory, c["file"]), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != c["sha256"]:
            raise ValueError(f"{c['file']}: SHA-256 mismatch")
        chunks.append(data)
    out = {}
    for t in man["tensors"]:
        buf = chunks[t["chunk"]][t["offset"]: t["offset"] + t["length"]]
        shape = list(t["shape"])
        s = t["scheme"]
        if s == "f32":
            a = np.frombuffer(buf, dtype="<f4").reshape(shape)
        elif s == "f16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32).reshape(shape)
        elif s in ("int8", "int4"):
            sc = t.get("scales", "f32")
            if sc not in ("f32", "f16"):
                raise ValueError(f"tensor {t['name']}: unknown scales {sc}")
            a = _dequant(buf, shape, 8 if s == "int8" else 4, "<f2" if sc == "f16" else "<f4").reshape(shape)
        else:
            raise ValueError(f"tensor {t['name']}: unknown scheme {s}")
        out[t["name"]] = torch.from_numpy(np.array(a, dtype=np.float32))
    return man, out


def split(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
