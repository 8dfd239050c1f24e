"""VAR's multi-scale residual VQVAE, written from webvar's spec (../../shared/specs/var.md, the var-tiny goldens).

Module and parameter names reproduce the official checkpoints' state_dict keys exactly (encoder.down.0.block.1.
conv2.weight, quantize.quant_resi.qresi_ls.3.bias, ...), so `webvar convert` and the Go engine read a model
trained here through the same path as vae_ch160v4096z32.pth, with no special case.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ldm_blocks import Downsample, Normalize, ResnetBlock, Upsample  # VAR's own AttnBlock fuses qkv


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions; qkv is one 1x1 conv whose output channels are q, k, v."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.norm = Normalize(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        # [B, HW, C] x [B, C, HW] -> [B, HW(query), HW(key)]
        w_BQK = torch.softmax(torch.bmm(q.transpose(1, 2), k) * (C ** -0.5), dim=2)
        h = torch.bmm(v, w_BQK.transpose(1, 2)).reshape(B, C, H, W)
        return x + self.proj_out(h)


class Level(nn.Module):
    """One resolution level: resnet blocks, attention after each block at the coarsest level, a resampler."""

    def __init__(self, blocks, attn, resample_name=None, resample=None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)
        if resample_name:
            setattr(self, resample_name, resample)
        self.resample_name = resample_name

    def forward(self, h):
        for j, b in enumerate(self.block):
            h = b(h)
            if len(self.attn):
                h = self.attn[j](h)
        if self.resample_name:
            h = getattr(self, self.resample_name)(h)
        return h


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1 = ResnetBlock(c, c)
        self.attn_1 = AttnBlock(c)
        self.block_2 = ResnetBlock(c, c)

    def forward(self, h):
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z):
        super().__init__()
        n = len(ch_mult)
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        cin = ch
        for i, m in enumerate(ch_mult):
            cout = ch * m
            blocks, attn = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(cin, cout))
                cin = cout
                if i == n - 1:
                    attn.append(AttnBlock(cin))
            last = i == n - 1
            self.down.append(Level(blocks, attn, None if last else "downsample", None if last else Downsample(cin)))
        self.mid = Mid(cin)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, z, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, z):
        super().__init__()
        n = len(ch_mult)
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z, cin, 3, 1, 1)
        self.mid = Mid(cin)
        levels = [None] * n  # up[i] is level i (finest = 0), built coarse to fine
        for i in reversed(range(n)):
            cout = ch * ch_mult[i]
            blocks, attn = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(cin, cout))
                cin = cout
                if i == n - 1:
                    attn.append(AttnBlock(cin))
            levels[i] = Level(blocks, attn, "upsample" if i else None, Upsample(cin) if i else None)
        self.up = nn.ModuleList(levels)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Phi(nn.Conv2d):
    """Phi(h) = (1 - r) h + r conv3x3(h), r = 0.5: the quantizer's residual conv after upsampling."""

    def __init__(self, c, ratio=0.5):
        super().__init__(c, c, 3, 1, 1)
        self.ratio = ratio

    def forward(self, h):
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


class PhiPartiallyShared(nn.Module):
    """K Phis shared across the scales: scale si of SN uses argmin_i |ticks[i] - si/(SN-1)| (numpy float64)."""

    def __init__(self, c, k=4):
        super().__init__()
        self.qresi_ls = nn.ModuleList([Phi(c) for _ in range(k)])
        self.ticks = np.linspace(1 / 3 / k, 1 - 1 / 3 / k, k) if k == 4 else np.linspace(1 / 2 / k, 1 - 1 / 2 / k, k)

    def __getitem__(self, at):
        return self.qresi_ls[int(np.argmin(np.abs(self.ticks - at)))]


class PhiShared(nn.Module):
    """share_quant_resi = 1: one Phi for every scale (key quant_resi.qresi)."""

    def __init__(self, c):
        super().__init__()
        self.qresi = Phi(c)

    def __getitem__(self, at):
        return self.qresi


class PhiNonShared(nn.ModuleList):
    """share_quant_resi = 0: one Phi per scale (keys quant_resi.{i}), chosen like the partially shared ones."""

    def __init__(self, c, k):
        super().__init__([Phi(c) for _ in range(k)])
        self.ticks = np.linspace(1 / 3 / k, 1 - 1 / 3 / k, k) if k == 4 else np.linspace(1 / 2 / k, 1 - 1 / 2 / k, k)

    def __getitem__(self, at):
        if isinstance(at, int):
            return super().__getitem__(at)
        return super().__getitem__(int(np.argmin(np.abs(self.ticks - at))))


class MultiScaleQuantizer(nn.Module):
    def __init__(self, vocab, cvae, patch_nums, beta=0.25, share_quant_resi=4):
        super().__init__()
        self.vocab, self.cvae, self.patch_nums, self.beta = vocab, cvae, tuple(patch_nums), beta
        self.embedding = nn.Embedding(vocab, cvae)
        if share_quant_resi == 0:
            self.quant_resi = PhiNonShared(cvae, len(self.patch_nums))
        elif share_quant_resi == 1:
            self.quant_resi = PhiShared(cvae)
        else:
            self.quant_resi = PhiPartiallyShared(cvae, share_quant_resi)
        # Training statistic kept for key compatibility with the official checkpoints (webvar ignores it).
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), vocab))

    def phi(self, si):
        sn = len(self.patch_nums)
        return self.quant_resi[si / (sn - 1)]

    def nearest(self, z_NC):
        """argmin_v |z|^2 + |e_v|^2 - 2 z.e_v (first index on ties)."""
        e = self.embedding.weight.float()
        z_NC = z_NC.float()
        d = z_NC.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z_NC @ e.t()
        return d.argmin(dim=1)

    def forward(self, f):
        """Training pass: returns (f_hat with straight-through gradient, vq loss, per-scale ids, f_hat detached)."""
        B, C, H, W = f.shape
        f_nograd = f.detach()
        f_rest = f_nograd.clone()
        f_hat = torch.zeros_like(f)
        loss = 0.0
        ids = []
        sn = len(self.patch_nums)
        for si, pn in enumerate(self.patch_nums):
            last = si == sn - 1
            rest = f_rest if last else F.interpolate(f_rest, size=(pn, pn), mode="area")
            rest_NC = rest.permute(0, 2, 3, 1).reshape(-1, C)
            with torch.no_grad(), torch.autocast(f.device.type, enabled=False):
                idx = self.nearest(rest_NC)
            ids.append(idx.view(B, pn * pn))
            h = self.embedding(idx).view(B, pn, pn, C).permute(0, 3, 1, 2)
            if not last:
                h = F.interpolate(h, size=(H, W), mode="bicubic", align_corners=False)
            h = self.phi(si)(h)
            f_hat = f_hat + h
            f_rest = f_rest - h.detach()
            # Codebook/Phi move towards f; the encoder is committed towards the (detached) reconstruction.
            loss = loss + F.mse_loss(f_hat, f_nograd) + self.beta * F.mse_loss(f_hat.detach(), f)
        loss = loss / sn
        f_st = (f_hat.detach() - f_nograd) + f
        return f_st, loss, ids, f_hat.detach()

    @torch.no_grad()
    def f_to_ids(self, f):
        """Inference tokenization (image features -> per-scale ids), exactly the sampler's f_hat recurrence."""
        return self.forward(f)[2]

    @torch.no_grad()
    def ids_to_fhat(self, ids):
        """Per-scale ids -> f_hat after the last scale."""
        B = ids[0].shape[0]
        P = self.patch_nums[-1]
        f_hat = torch.zeros(B, self.cvae, P, P, device=ids[0].device)
        for si, pn in enumerate(self.patch_nums):
            h = self.embedding(ids[si]).view(B, pn, pn, self.cvae).permute(0, 3, 1, 2)
            if si != len(self.patch_nums) - 1:
                h = F.interpolate(h, size=(P, P), mode="bicubic", align_corners=False)
            f_hat = f_hat + self.phi(si)(h)
        return f_hat

    def next_inputs(self, ids):
        """Teacher forcing: the VAR inputs of scales 1..K-1 from the ground-truth ids, [B, L - 1, Cvae]."""
        B = ids[0].shape[0]
        P = self.patch_nums[-1]
        sn = len(self.patch_nums)
        f_hat = torch.zeros(B, self.cvae, P, P, device=ids[0].device)
        out = []
        for si in range(sn - 1):
            pn = self.patch_nums[si]
            h = self.embedding(ids[si]).view(B, pn, pn, self.cvae).permute(0, 3, 1, 2)
            f_hat = f_hat + self.phi(si)(F.interpolate(h, size=(P, P), mode="bicubic", align_corners=False))
            nxt = self.patch_nums[si + 1]
            out.append(F.interpolate(f_hat, size=(nxt, nxt), mode="area").flatten(2).transpose(1, 2))
        return torch.cat(out, dim=1)


class VQVAE(nn.Module):
    def __init__(self, vocab=512, z=32, ch=32, ch_mult=(1, 2, 4), num_res_blocks=2, patch_nums=(1, 2, 3, 4, 5, 6, 8),
                 share_quant_resi=4):
        super().__init__()
        self.hparams = dict(vocab=vocab, z=z, ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
                            patch_nums=list(patch_nums))
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z)
        self.quantize = MultiScaleQuantizer(vocab, z, patch_nums, share_quant_resi=share_quant_resi)
        self.quant_conv = nn.Conv2d(z, z, 3, 1, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 3, 1, 1)

    def encode_f(self, x):
        return self.quant_conv(self.encoder(x))

    def forward(self, x):
        f_st, vq_loss, ids, _ = self.quantize(self.encode_f(x))
        return self.decoder(self.post_quant_conv(f_st)), vq_loss, ids

    @torch.no_grad()
    def img_to_ids(self, x):
        return self.quantize.f_to_ids(self.encode_f(x))

    @torch.no_grad()
    def fhat_to_img(self, f_hat):
        return self.decoder(self.post_quant_conv(f_hat)).clamp(-1, 1)
