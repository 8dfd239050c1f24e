"""The convolutional blocks that the taming / LDM autoencoders share, and with them LlamaGen's VQ tokenizer
(FlexVAR), MAR's KL VAE, RQ-VAE and VAR's VQVAE: their attribute names are the official state_dict keys of
every one of those checkpoints (norm1, conv1, norm2, conv2, nin_shortcut; norm, q, k, v, proj_out; conv), so
each family's encoder and decoder, which differ in how they arrange the blocks, build on these (VAR's VQVAE
has its own AttnBlock, with one fused qkv conv).

  Normalize    GroupNorm(32 groups, eps 1e-6, affine)
  ResnetBlock  x + conv2(dropout(silu(norm2(conv1(silu(norm1(x))))))), a 1x1 nin_shortcut on x when cin != cout
  AttnBlock    single-head spatial self-attention, separate 1x1 q / k / v convs, scale C^-0.5, residual
  Downsample   pad right and bottom by one zero, then a 3x3 stride-2 conv without padding
  Upsample     nearest 2x, then a 3x3 conv
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def Normalize(c):
    return nn.GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout, dropout=0.0):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Normalize(cout)
        self.dropout = nn.Dropout(dropout)  # no parameters: the keys stay those of checkpoints without it
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).reshape(B, C, H * W).permute(0, 2, 1)  # B, HW, C
        k = self.k(h).reshape(B, C, H * W)  # B, C, HW
        v = self.v(h).reshape(B, C, H * W)
        w = torch.softmax(torch.bmm(q, k) * (C ** -0.5), dim=2)  # B, HWq, HWk
        o = torch.bmm(v, w.permute(0, 2, 1)).reshape(B, C, H, W)
        return x + self.proj_out(o)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
