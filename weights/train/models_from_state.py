"""Builds this directory's VQVAE and VAR modules from state dicts, reading the architecture from names and
shapes (as webvar's Go engine does), so the same code serves the f32 training checkpoints and the shipped,
converted weights."""

import re

import torch

from var import VAR
from vqvae import VQVAE


def build_vqvae(sd, patch_nums):
    vocab, cvae = sd["quantize.embedding.weight"].shape
    levels = sorted({int(m.group(1)) for k in sd for m in [re.match(r"decoder\.up\.(\d+)\.", k)] if m})
    ch = sd["decoder.up.0.block.0.conv2.weight"].shape[0]
    ch_mult = [sd[f"decoder.up.{i}.block.0.conv2.weight"].shape[0] // ch for i in levels]
    blocks = len({k.split(".")[4] for k in sd if k.startswith("decoder.up.0.block.")})
    vae = VQVAE(vocab=vocab, z=cvae, ch=ch, ch_mult=ch_mult, num_res_blocks=blocks - 1, patch_nums=patch_nums)
    sd = dict(sd)
    sd.setdefault("quantize.ema_vocab_hit_SV", torch.zeros(len(patch_nums), vocab))
    missing, unexpected = vae.load_state_dict(sd, strict=False)
    if unexpected or any(not k.startswith("encoder.") and k != "quant_conv.weight" and k != "quant_conv.bias"
                         for k in missing):
        raise ValueError(f"VQVAE state dict: missing {missing}, unexpected {unexpected}")
    return vae.eval()


def build_var(sd, patch_nums):
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    width, cvae = sd["word_embed.weight"].shape
    heads = sd["blocks.0.attn.scale_mul_1H11"].shape[1]
    vocab = sd["head.weight"].shape[0]
    classes = sd["class_emb.weight"].shape[0] - 1
    model = VAR(vocab, cvae, num_classes=classes, depth=depth, width=width, heads=heads, patch_nums=patch_nums)
    sd = dict(sd)
    for k, v in model.state_dict().items():  # buffers the converter leaves out (derived, not learned)
        if k.endswith("zero_k_bias") or k in ("lvl_1L", "attn_bias_for_masking"):
            sd.setdefault(k, v)
    model.load_state_dict(sd, strict=True)
    return model.eval()
