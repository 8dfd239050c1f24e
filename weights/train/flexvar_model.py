"""FlexVAR (class-conditional next-scale prediction without residuals) and its LlamaGen-style VQ tokenizer,
written from webvar's spec (shared/specs/flexvar.md) and the behaviour pinned down by
shared/fixtures/flexvar-tiny/golden.md.

Module and parameter names reproduce the official checkpoints' state_dict keys, so that
`VQModel.state_dict()` saved as {'model': sd} is a FlexVAE-style vae.pth and `FlexVAR.state_dict()` saved raw is a
FlexVAR var.pth:

  tokenizer: encoder.conv_in, encoder.conv_blocks.N.{res.M,attn.M,downsample.conv}, encoder.mid.{0,1,2},
             encoder.norm_out, encoder.conv_out, decoder.conv_in, decoder.mid.{0,1,2},
             decoder.conv_blocks.N.{res.M,attn.M,upsample.conv} (N=0 coarsest), decoder.norm_out,
             decoder.conv_out, quant_conv, post_quant_conv, quantize.embedding.weight, quantize.codebook_used
  transformer: pos_start, pos_1LC (1,C,32,32), attn_bias_for_masking, word_embed, class_emb,
             blocks.N.{attn.{scale_mul_1H11,q_bias,v_bias,zero_k_bias,mat_qkv,proj},ffn.{fc1,fc2},ada_lin.1},
             head_nm.ada_lin.1, head

Behaviour (as in the official code):
  * the codebook is l2-normalised wherever it is used; a scale's tokens are
    argmin_e |normalize(area(h, pn)) - normalize(e)|^2 with h = quant_conv(encoder(x)), each scale independently;
  * the transformer's step-k target is that token map at pn_k; the input of step k+1 is
    bicubic(normalize(codebook)[idx_k] as (B, D, pn_k, pn_k), pn_{k+1}) (align_corners=False) -> word_embed;
    step 0's input is class_emb(label) + pos_start; every step adds area(pos_1LC, pn_k);
  * block-causal attention over steps; AdaLN chunks gamma1, gamma2, scale1, scale2, shift1, shift2;
  * sampling: CFG ratio mode t = cfg * si / min(K-1, 9) (cfg when pn > max_pn), logits = (1+t) cond - t uncond;
    top-k / top-p; greedy when pn > max_pn or pn is not one of the official sampled sides;
  * the image is decode_code(idx of the LAST step) = decoder(post_quant_conv(normalize(codebook)[idx])).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ldm_blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample

# --------------------------------------------------------------------------------------------------------------
# Tokenizer (LlamaGen VQModel layout)
# --------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, in_channels=3, ch=32, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=64):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_ch_mult = (1,) + tuple(ch_mult)
        self.conv_blocks = nn.ModuleList()
        block_in = ch
        for i in range(self.num_resolutions):
            blk = nn.Module()
            res, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                res.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if i == self.num_resolutions - 1:
                    attn.append(AttnBlock(block_in))
            blk.res, blk.attn = res, attn
            if i != self.num_resolutions - 1:
                blk.downsample = Downsample(block_in)
            self.conv_blocks.append(blk)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in), AttnBlock(block_in), ResnetBlock(block_in, block_in)])
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, blk in enumerate(self.conv_blocks):
            for j in range(self.num_res_blocks):
                h = blk.res[j](h)
                if len(blk.attn) > 0:
                    h = blk.attn[j](h)
            if i != self.num_resolutions - 1:
                h = blk.downsample(h)
        for m in self.mid:
            h = m(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, z_channels=64, ch=32, ch_mult=(1, 2, 4), num_res_blocks=2, out_channels=3):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.ModuleList([ResnetBlock(block_in, block_in), AttnBlock(block_in), ResnetBlock(block_in, block_in)])
        self.conv_blocks = nn.ModuleList()
        for i in range(self.num_resolutions):
            blk = nn.Module()
            res, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[self.num_resolutions - i - 1]
            for _ in range(num_res_blocks + 1):
                res.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if i == 0:
                    attn.append(AttnBlock(block_in))
            blk.res, blk.attn = res, attn
            if i != self.num_resolutions - 1:
                blk.upsample = Upsample(block_in)
            self.conv_blocks.append(blk)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, 1, 1)

    def forward(self, z):
        h = self.conv_in(z)
        for m in self.mid:
            h = m(h)
        for i, blk in enumerate(self.conv_blocks):
            for j in range(self.num_res_blocks + 1):
                h = blk.res[j](h)
                if len(blk.attn) > 0:
                    h = blk.attn[j](h)
            if i != self.num_resolutions - 1:
                h = blk.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """l2-normalised codebook; `codebook_used` is LlamaGen's usage buffer (a window of recent indices)."""

    def __init__(self, n_e, e_dim, beta=0.25):
        super().__init__()
        self.n_e, self.e_dim, self.beta = n_e, e_dim, beta
        self.embedding = nn.Embedding(n_e, e_dim)
        self.embedding.weight.data.uniform_(-1.0 / n_e, 1.0 / n_e)
        self.embedding.weight.data = F.normalize(self.embedding.weight.data, p=2, dim=-1)
        self.register_buffer("codebook_used", torch.zeros(65536))

    def codebook(self):
        return F.normalize(self.embedding.weight, p=2, dim=-1)

    def ids(self, h):
        """h: (B, D, p, p) un-normalised -> token ids (B, p*p) row-major."""
        B, D, H, W = h.shape
        z = F.normalize(h.permute(0, 2, 3, 1).reshape(-1, D), p=2, dim=-1)
        e = self.codebook()
        d = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()
        return d.argmin(1).view(B, H * W)

    def lookup(self, ids_BL, side):
        """ids (B, side*side) -> normalised code (B, D, side, side)."""
        B = ids_BL.shape[0]
        return self.codebook()[ids_BL].view(B, side, side, self.e_dim).permute(0, 3, 1, 2)

    def forward(self, h):
        """Returns (straight-through code, vq loss, ids) for an un-normalised (B, D, p, p) map."""
        B, D, H, W = h.shape
        z = F.normalize(h, p=2, dim=1)
        ids = self.ids(h)
        zq = self.codebook()[ids].view(B, H, W, D).permute(0, 3, 1, 2)
        loss = F.mse_loss(zq, z.detach()) + self.beta * F.mse_loss(z, zq.detach())
        if self.training:
            with torch.no_grad():
                flat = ids.reshape(-1).float()
                n = min(flat.numel(), self.codebook_used.numel())
                self.codebook_used.copy_(torch.cat((self.codebook_used[n:], flat[-n:])))
        return z + (zq - z).detach(), loss, ids


class VQModel(nn.Module):
    def __init__(self, codebook_size=512, codebook_embed_dim=32, z_channels=64, ch=32, ch_mult=(1, 2, 4),
                 num_res_blocks=2, beta=0.25):
        super().__init__()
        self.hparams = dict(codebook_size=codebook_size, codebook_embed_dim=codebook_embed_dim, z_channels=z_channels,
                            ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks, beta=beta)
        self.Cvae, self.vocab_size = codebook_embed_dim, codebook_size
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.encoder = Encoder(ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks, z_channels=z_channels)
        self.decoder = Decoder(z_channels=z_channels, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks)
        self.quantize = VectorQuantizer(codebook_size, codebook_embed_dim, beta)
        self.quant_conv = nn.Conv2d(z_channels, codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(codebook_embed_dim, z_channels, 1)

    def encode_conti(self, x):
        return self.quant_conv(self.encoder(x))

    def decode(self, code):
        return self.decoder(self.post_quant_conv(code))

    def decode_code(self, ids_BL, side):
        return self.decode(self.quantize.lookup(ids_BL, side))

    @torch.no_grad()
    def img_to_ids(self, x, sides):
        """Per-side token maps of the ground truth: quantize(area(h, pn)) for pn in sides, each independently."""
        h = self.encode_conti(x)
        return [self.quantize.ids(F.interpolate(h, size=(p, p), mode="area")) for p in sides]


# --------------------------------------------------------------------------------------------------------------
# FlexVAR transformer
# --------------------------------------------------------------------------------------------------------------

SAMPLED_SIDES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 23, 24, 32)  # other sides are decoded greedily (official)


def sincos_2d(h, w, d):
    """(1, d, h, w): channel 2k = sin(y * div_k), 2k+1 = cos(x * div_k), div_k = exp(2k * -(ln 10000 / d))."""
    div = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
    y = torch.arange(h).float().view(1, h, 1)
    x = torch.arange(w).float().view(1, 1, w)
    pe = torch.zeros(d, h, w)
    pe[0::2] = torch.sin(y * div.view(-1, 1, 1)).expand(-1, h, w)
    pe[1::2] = torch.cos(x * div.view(-1, 1, 1)).expand(-1, h, w)
    return pe.unsqueeze(0)


def block_causal_bias(sides):
    L = sum(p * p for p in sides)
    d = torch.cat([torch.full((p * p,), i) for i, p in enumerate(sides)]).view(1, L, 1)
    return torch.where(d >= d.transpose(1, 2), 0.0, -torch.inf).reshape(1, 1, L, L)


class SelfAttention(nn.Module):
    def __init__(self, c, heads, l2_norm=True):
        super().__init__()
        self.c, self.heads, self.hd, self.l2_norm = c, heads, c // heads, l2_norm
        if l2_norm:  # cosine attention with a learned per-head scale
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:  # plain attention: scale 0.25 / sqrt(head_dim), as VAR's
            self.scale = 0.25 / math.sqrt(self.hd)
        self.q_bias = nn.Parameter(torch.zeros(c))
        self.v_bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("zero_k_bias", torch.zeros(c))
        self.mat_qkv = nn.Linear(c, 3 * c, bias=False)
        self.proj = nn.Linear(c, c)
        self.caching, self.cached_k, self.cached_v = False, None, None

    def kv_caching(self, on):
        self.caching, self.cached_k, self.cached_v = on, None, None

    def forward(self, x, attn_bias):
        B, L, C = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.heads, self.hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # B, H, L, hd
        if self.l2_norm:
            q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp(max=self.max_scale_mul).exp()
            k = F.normalize(k, dim=-1)
        else:
            q = q * self.scale
        if self.caching:
            if self.cached_k is not None:
                k = torch.cat((self.cached_k, k), dim=2)
                v = torch.cat((self.cached_v, v), dim=2)
            self.cached_k, self.cached_v = k, v
        att = q @ k.transpose(-1, -2)
        if attn_bias is not None:
            att = att + attn_bias
        o = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, L, C)
        return self.proj(o)


class FFN(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNSelfAttn(nn.Module):
    """With shared_aln the block has no ada_lin but ada_gss (1, 1, 6, C), added to the output of the model's
    shared_ada_lin, which it receives as cond_BD (B, 1, 6, C)."""

    def __init__(self, c, heads, mlp_ratio=4.0, l2_norm=True, shared_aln=False):
        super().__init__()
        self.c, self.shared_aln = c, shared_aln
        self.attn = SelfAttention(c, heads, l2_norm)
        self.ffn = FFN(c, round(c * mlp_ratio))
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, c) / c ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(c, 6 * c))

    def forward(self, x, cond_BD, attn_bias):
        if self.shared_aln:
            g1, g2, s1, s2, sh1, sh2 = (self.ada_gss + cond_BD).unbind(2)
        else:
            g1, g2, s1, s2, sh1, sh2 = self.ada_lin(cond_BD).view(-1, 1, 6, self.c).unbind(2)
        ln = lambda t: F.layer_norm(t, (self.c,), eps=1e-6)
        x = x + self.attn(ln(x) * (1 + s1) + sh1, attn_bias) * g1
        x = x + self.ffn(ln(x) * (1 + s2) + sh2) * g2
        return x


class AdaLNBeforeHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(c, 2 * c))

    def forward(self, x, cond_BD):
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.c).unbind(2)
        return F.layer_norm(x, (self.c,), eps=1e-6) * (1 + scale) + shift


class FlexVAR(nn.Module):
    def __init__(self, vocab_size, cvae, num_classes=10, depth=6, embed_dim=256, num_heads=4, mlp_ratio=4.0,
                 patch_nums=(1, 2, 3, 4, 5, 6, 8), cond_drop_rate=0.1, attn_l2_norm=True, shared_aln=False):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, Cvae=cvae, num_classes=num_classes, depth=depth,
                            embed_dim=embed_dim, num_heads=num_heads, head_dim=embed_dim // num_heads,
                            mlp_ratio=mlp_ratio, patch_nums=list(patch_nums), cond_drop_rate=cond_drop_rate,
                            attn_l2_norm=attn_l2_norm, shared_aln=shared_aln, norm_eps=1e-6)
        self.V, self.Cvae, self.C, self.num_classes = vocab_size, cvae, embed_dim, num_classes
        self.depth, self.cond_drop_rate = depth, cond_drop_rate
        self.patch_nums = tuple(patch_nums)
        C = embed_dim
        self.word_embed = nn.Linear(cvae, C)
        self.class_emb = nn.Embedding(num_classes + 1, C)
        self.pos_start = nn.Parameter(torch.empty(1, 1, C))
        self.pos_1LC = nn.Parameter(sincos_2d(32, 32, C))
        self.shared_ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(C, 6 * C)) if shared_aln else None
        self.blocks = nn.ModuleList([AdaLNSelfAttn(C, num_heads, mlp_ratio, attn_l2_norm, shared_aln)
                                     for _ in range(depth)])
        self.register_buffer("attn_bias_for_masking", block_causal_bias(self.patch_nums).contiguous())
        self.head_nm = AdaLNBeforeHead(C)
        self.head = nn.Linear(C, vocab_size)
        self._bias_cache = {}
        self.init_weights()

    def init_weights(self, init_adaln=0.5, init_adaln_gamma=1e-5, init_head=0.02):
        """The official (VAR) init_weights with init_std = sqrt(1 / C / 3)."""
        std = math.sqrt(1 / self.C / 3)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        nn.init.trunc_normal_(self.pos_start, std=std)
        self.head.weight.data.mul_(init_head)
        self.head.bias.data.zero_()
        self.head_nm.ada_lin[-1].weight.data.mul_(init_adaln)
        self.head_nm.ada_lin[-1].bias.data.zero_()
        for b in self.blocks:
            b.attn.proj.weight.data.div_(math.sqrt(2 * self.depth))
            b.ffn.fc2.weight.data.div_(math.sqrt(2 * self.depth))
            if b.shared_aln:
                b.ada_gss.data[:, :, 2:].mul_(init_adaln)
                b.ada_gss.data[:, :, :2].mul_(init_adaln_gamma)
            else:
                b.ada_lin[-1].weight.data[2 * self.C:].mul_(init_adaln)
                b.ada_lin[-1].weight.data[:2 * self.C].mul_(init_adaln_gamma)
                b.ada_lin[-1].bias.data.zero_()

    def block_cond(self, cond_BD):
        """What the blocks receive: cond_BD, or with shared AdaLN shared_ada_lin(cond_BD) as (B, 1, 6, C)."""
        if self.shared_ada_lin is None:
            return cond_BD
        return self.shared_ada_lin(cond_BD).view(-1, 1, 6, self.C)

    def pos_for(self, sides):
        return torch.cat([F.interpolate(self.pos_1LC, size=(p, p), mode="area").reshape(1, self.C, -1).permute(0, 2, 1)
                          for p in sides], dim=1)

    def attn_bias(self, sides):
        sides = tuple(sides)
        if sides == self.patch_nums:
            return self.attn_bias_for_masking
        if sides not in self._bias_cache:
            self._bias_cache[sides] = block_causal_bias(sides).to(self.pos_start.device)
        return self._bias_cache[sides]

    def get_logits(self, h, cond_BD):
        return self.head(self.head_nm(h, cond_BD))

    def forward(self, label_B, x_BLCv_wo_first_l, sides):
        """Teacher-forced logits (B, L, V) for the schedule `sides`; in training, labels become the null class
        with probability cond_drop_rate."""
        B = label_B.shape[0]
        if self.training and self.cond_drop_rate > 0:
            drop = torch.rand(B, device=label_B.device) < self.cond_drop_rate
            label_B = torch.where(drop, torch.full_like(label_B, self.num_classes), label_B)
        cond_BD = self.class_emb(label_B)
        sos = cond_BD.unsqueeze(1) + self.pos_start.expand(B, 1, -1)
        x = torch.cat((sos, self.word_embed(x_BLCv_wo_first_l.float())), dim=1) + self.pos_for(sides)
        bias = self.attn_bias(sides)
        gss = self.block_cond(cond_BD)
        for b in self.blocks:
            x = b(x, gss, bias)
        return self.get_logits(x, cond_BD)

    @torch.no_grad()
    def autoregressive_infer_cfg(self, vqvae, label_B, sides=None, cfg=1.5, top_k=0, top_p=0.0, g_seed=None,
                                 rng=None, max_pn=16, used_llamagen_cfg=False, return_ids=False):
        """The official sampler: KV cache over 2B rows (cond then uncond), CFG, top-k/top-p. Returns the image
        decoded from the last step's tokens (not clamped), optionally with the per-step ids."""
        sides = tuple(sides or self.patch_nums)
        if rng is None and g_seed is not None:
            rng = torch.Generator(device=label_B.device)
            rng.manual_seed(g_seed)
        B, K = label_B.shape[0], len(sides)
        label_2B = torch.cat((label_B, torch.full_like(label_B, self.num_classes)))
        cond_BD = self.class_emb(label_2B)
        next_map = cond_BD.unsqueeze(1) + self.pos_start.expand(2 * B, 1, -1)
        gss = self.block_cond(cond_BD)
        for b in self.blocks:
            b.attn.kv_caching(True)
        all_ids = []
        try:
            for si, pn in enumerate(sides):
                x = next_map + self.pos_for([pn])
                for b in self.blocks:
                    x = b(x, gss, None)
                logits = self.get_logits(x, cond_BD)
                if used_llamagen_cfg:
                    logits = logits[B:] + (logits[:B] - logits[B:]) * cfg
                else:
                    ratio = si / min(K - 1, 9) if K > 1 else 0.0
                    t = cfg * ratio if pn <= max_pn else cfg
                    logits = (1 + t) * logits[:B] - t * logits[B:]
                greedy = pn > max_pn or pn not in SAMPLED_SIDES
                ids = sample_top_k_top_p(logits, top_k=1 if greedy else top_k, top_p=0.0 if greedy else top_p,
                                         rng=rng)
                all_ids.append(ids)
                if si < K - 1:
                    code = vqvae.quantize.lookup(ids, pn)
                    nxt = F.interpolate(code, size=(sides[si + 1], sides[si + 1]), mode="bicubic")
                    nxt = self.word_embed(nxt.flatten(2).transpose(1, 2))
                    next_map = torch.cat((nxt, nxt))
        finally:
            for b in self.blocks:
                b.attn.kv_caching(False)
        img = vqvae.decode_code(all_ids[-1], sides[-1])
        return (img, all_ids) if return_ids else img


def sample_top_k_top_p(logits_BlV, top_k=0, top_p=0.0, rng=None):
    """The official sample_with_top_k_top_p_ (one sample per position): top-k then nucleus filtering."""
    B, l, V = logits_BlV.shape
    logits = logits_BlV.clone()
    if top_k > 0:
        k = min(top_k, V)
        remove = logits < logits.topk(k, largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
        logits.masked_fill_(remove, -torch.inf)
    if top_p > 0:
        s, si = logits.sort(dim=-1, descending=False)
        rm = s.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        rm[..., -1:] = False
        logits.masked_fill_(rm.scatter(si.ndim - 1, si, rm), -torch.inf)
    return torch.multinomial(logits.softmax(dim=-1).view(-1, V), num_samples=1, replacement=True,
                             generator=rng).view(B, l)


# --------------------------------------------------------------------------------------------------------------
# Building from checkpoints (architecture read from key names and shapes, as webvar's Go loader does)
# --------------------------------------------------------------------------------------------------------------


def _indices(sd, prefix):
    out = set()
    for k in sd:
        if k.startswith(prefix):
            out.add(int(k[len(prefix):].split(".")[0]))
    return sorted(out)


def vae_from_state(sd):
    """sd: VQModel state dict (the value of vae.pth['model'])."""
    V, D = sd["quantize.embedding.weight"].shape
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = _indices(sd, "encoder.conv_blocks.")
    ch_mult = [sd[f"encoder.conv_blocks.{i}.res.0.conv1.weight"].shape[0] // ch for i in levels]
    nrb = len(_indices(sd, "encoder.conv_blocks.0.res."))
    z = sd["encoder.conv_out.weight"].shape[0]
    vae = VQModel(V, D, z, ch, ch_mult, nrb)
    vae.load_state_dict(sd, strict=True)
    return vae.eval()


def var_from_state(sd, patch_nums=(1, 2, 3, 4, 5, 6, 8), heads=None):
    """sd: raw FlexVAR state dict (var.pth). patch_nums must match attn_bias_for_masking's length."""
    C, cvae = sd["word_embed.weight"].shape
    depth = len(_indices(sd, "blocks."))
    l2 = "blocks.0.attn.scale_mul_1H11" in sd
    if heads is None:  # no tensor says it without l2-norm attention: the official width = 64 * heads
        heads = sd["blocks.0.attn.scale_mul_1H11"].shape[1] if l2 else C // 64
    V = sd["head.weight"].shape[0]
    classes = sd["class_emb.weight"].shape[0] - 1
    mlp = sd["blocks.0.ffn.fc1.weight"].shape[0] / C
    model = FlexVAR(V, cvae, classes, depth, C, heads, mlp, patch_nums, attn_l2_norm=l2,
                    shared_aln="blocks.0.ada_gss" in sd)
    model.load_state_dict(sd, strict=True)
    return model.eval()
