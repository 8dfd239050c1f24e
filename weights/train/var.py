"""A class-conditional VAR transformer (next-scale prediction), written from webvar's spec (shared/specs/var.md).

Parameter and buffer names reproduce the official checkpoints' state_dict keys (pos_start, pos_1LC, lvl_1L,
attn_bias_for_masking, blocks.N.attn.mat_qkv.weight, blocks.N.ada_lin.1.weight, head_nm.ada_lin.1.weight, ...):
AdaLN self-attention blocks (not shared), l2-normalised attention with a learned per-head scale, GELU(tanh) FFN,
a class embedding with one extra row for the null class (classifier-free guidance).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    def __init__(self, c, heads, l2_norm=True):
        super().__init__()
        self.c, self.heads, self.hd, self.l2_norm = c, heads, c // heads, l2_norm
        self.mat_qkv = nn.Linear(c, 3 * c, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(c))
        self.v_bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("zero_k_bias", torch.zeros(c))
        if l2_norm:  # cosine attention with a learned per-head scale
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
            self.max_scale_mul = math.log(100)
        else:  # plain attention, scale 0.25 / sqrt(head_dim)
            self.scale = 0.25 / math.sqrt(self.hd)
        self.proj = nn.Linear(c, c)

    def qkv(self, x):
        B, L, _ = x.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        q, k, v = F.linear(x, self.mat_qkv.weight, bias).view(B, L, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4).unbind(0)
        if self.l2_norm:
            q = F.normalize(q, dim=-1) * self.scale_mul_1H11.clamp(max=self.max_scale_mul).exp()
            k = F.normalize(k, dim=-1)
        else:
            q = q * self.scale
        return q, k, v  # [B, H, L, hd]

    def forward(self, x, mask=None, cache=None):
        """mask: additive [L, L] (training); cache: dict holding k/v of earlier scales (sampling, no mask)."""
        B, L, C = x.shape
        q, k, v = self.qkv(x)
        if cache is not None:
            if "k" in cache:
                k = torch.cat((cache["k"], k), dim=2)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        att = torch.softmax((q @ k.transpose(-1, -2)).float() + (0 if mask is None else mask), dim=-1).to(v.dtype)
        o = (att @ v).transpose(1, 2).reshape(B, L, C)
        return self.proj(o)


class FFN(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, c)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class AdaLNBlock(nn.Module):
    """With shared_aln: no ada_lin but ada_gss (1, 1, 6, C), added to the model's shared_ada_lin output, which the
    block receives as cond_BD (B, 1, 6, C)."""

    def __init__(self, c, heads, mlp_ratio=4.0, l2_norm=True, shared_aln=False):
        super().__init__()
        self.c, self.shared_aln = c, shared_aln
        self.attn = SelfAttention(c, heads, l2_norm)
        self.ffn = FFN(c, int(c * mlp_ratio))
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, c) / c ** 0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))

    def forward(self, x, cond_BD, mask=None, cache=None):
        if self.shared_aln:
            g1, g2, s1, s2, sh1, sh2 = (self.ada_gss + cond_BD).unbind(2)
        else:
            g1, g2, s1, s2, sh1, sh2 = self.ada_lin(cond_BD).view(-1, 1, 6, self.c).unbind(2)
        ln = lambda t: F.layer_norm(t, (self.c,), eps=1e-6)
        x = x + self.attn(ln(x) * (1 + s1) + sh1, mask, cache) * g1
        x = x + self.ffn(ln(x) * (1 + s2) + sh2) * g2
        return x


class AdaLNBeforeHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 2 * c))

    def forward(self, x, cond_BD):
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.c).unbind(2)
        return F.layer_norm(x, (self.c,), eps=1e-6) * (1 + scale) + shift


class VAR(nn.Module):
    def __init__(self, vocab, cvae, num_classes=10, depth=8, width=256, heads=4, patch_nums=(1, 2, 3, 4, 5, 6, 8),
                 cond_drop=0.1, attn_l2_norm=True, shared_aln=False):
        super().__init__()
        self.hparams = dict(vocab=vocab, cvae=cvae, num_classes=num_classes, depth=depth, width=width, heads=heads,
                            patch_nums=list(patch_nums), cond_drop=cond_drop)
        self.vocab, self.num_classes, self.c, self.cond_drop = vocab, num_classes, width, cond_drop
        self.patch_nums = tuple(patch_nums)
        L = sum(p * p for p in self.patch_nums)
        self.L = L
        c = width
        self.word_embed = nn.Linear(cvae, c)
        self.class_emb = nn.Embedding(num_classes + 1, c)
        self.pos_start = nn.Parameter(torch.empty(1, 1, c))
        self.pos_1LC = nn.Parameter(torch.empty(1, L, c))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), c)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c)) if shared_aln else None
        self.blocks = nn.ModuleList([AdaLNBlock(c, heads, 4.0, attn_l2_norm, shared_aln) for _ in range(depth)])
        self.head_nm = AdaLNBeforeHead(c)
        self.head = nn.Linear(c, vocab)
        lvl = torch.cat([torch.full((p * p,), i) for i, p in enumerate(self.patch_nums)]).view(1, L)
        self.register_buffer("lvl_1L", lvl)
        mask = torch.where(lvl.view(L, 1) >= lvl.view(1, L), 0.0, -torch.inf).view(1, 1, L, L)
        self.register_buffer("attn_bias_for_masking", mask)
        self._init()

    def _init(self):
        std = 0.02
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.trunc_normal_(m.weight, std=std)
        for p in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(p, std=std)
        for b in self.blocks:
            # AdaLN-zero-like start: every residual branch begins nearly closed (gammas ~ 0), scales/shifts ~ 0.
            if not b.shared_aln:
                nn.init.trunc_normal_(b.ada_lin[1].weight, std=std * 0.5)
                b.ada_lin[1].weight.data[: 2 * self.c].mul_(1e-2)
            nn.init.trunc_normal_(b.attn.proj.weight, std=std / math.sqrt(2 * len(self.blocks)))
            nn.init.trunc_normal_(b.ffn.fc2.weight, std=std / math.sqrt(2 * len(self.blocks)))
        nn.init.trunc_normal_(self.head_nm.ada_lin[1].weight, std=std * 0.5)

    def block_cond(self, cond_BD):
        """What the blocks receive: cond_BD, or with shared AdaLN shared_ada_lin(cond_BD) as (B, 1, 6, C)."""
        if self.shared_ada_lin is None:
            return cond_BD
        return self.shared_ada_lin(cond_BD).view(-1, 1, 6, self.c)

    def forward(self, labels_B, x_BLCv_wo_first):
        """Teacher-forced logits [B, L, V]; labels are replaced by the null class with probability cond_drop."""
        B = labels_B.shape[0]
        if self.training and self.cond_drop > 0:
            drop = torch.rand(B, device=labels_B.device) < self.cond_drop
            labels_B = torch.where(drop, torch.full_like(labels_B, self.num_classes), labels_B)
        cond_BD = self.class_emb(labels_B)
        sos = cond_BD.unsqueeze(1) + self.pos_start
        x = torch.cat((sos, self.word_embed(x_BLCv_wo_first.float())), dim=1)
        x = x + self.lvl_embed(self.lvl_1L.expand(B, -1)) + self.pos_1LC
        mask = self.attn_bias_for_masking[0, 0]
        gss = self.block_cond(cond_BD)
        for b in self.blocks:
            x = b(x, gss, mask)
        return self.head(self.head_nm(x, cond_BD))

    @torch.no_grad()
    def generate(self, vae, labels_B, cfg=0.0, top_k=1, top_p=0.0, generator=None, return_gaps=False):
        """The sampler of shared/specs/var.md: KV cache over 2B rows (cond then null class), CFG weight
        cfg * si/(K-1). top_k=1 is greedy (deterministic). Returns per-scale ids (and the smallest top-2 gap of
        the guided logits over all sampled positions when return_gaps)."""
        q = vae.quantize
        B = labels_B.shape[0]
        K = len(self.patch_nums)
        P = self.patch_nums[-1]
        labels = torch.cat((labels_B, torch.full_like(labels_B, self.num_classes)))
        cond_BD = self.class_emb(labels)
        lvl_pos = self.lvl_embed(self.lvl_1L) + self.pos_1LC  # [1, L, C]
        x = cond_BD.unsqueeze(1) + self.pos_start + lvl_pos[:, :1]
        caches = [dict() for _ in self.blocks]
        gss = self.block_cond(cond_BD)
        f_hat = torch.zeros(B, q.cvae, P, P)
        ids, min_gap, cur = [], math.inf, 0
        for si, pn in enumerate(self.patch_nums):
            cur += pn * pn
            for b, cache in zip(self.blocks, caches):
                x = b(x, gss, None, cache)
            logits = self.head(self.head_nm(x, cond_BD)).float()
            t = cfg * si / (K - 1)
            logits = (1 + t) * logits[:B] - t * logits[B:]
            top2 = logits.topk(2, dim=-1).values
            min_gap = min(min_gap, float((top2[..., 0] - top2[..., 1]).min()))
            if top_k == 1:
                idx = logits.argmax(dim=-1)
            else:
                idx = sample_top_k_top_p(logits, top_k, top_p, generator)
            ids.append(idx)
            h = q.embedding(idx).view(B, pn, pn, q.cvae).permute(0, 3, 1, 2)
            if si != K - 1:
                f_hat = f_hat + q.phi(si)(F.interpolate(h, size=(P, P), mode="bicubic", align_corners=False))
                nxt = self.patch_nums[si + 1]
                nx = F.interpolate(f_hat, size=(nxt, nxt), mode="area").flatten(2).transpose(1, 2)
                x = self.word_embed(nx) + lvl_pos[:, cur:cur + nxt * nxt]
                x = torch.cat((x, x))
            else:
                f_hat = f_hat + q.phi(si)(h)
        return (ids, min_gap) if return_gaps else ids


def sample_top_k_top_p(logits_BlV, top_k, top_p, generator=None):
    B, l, V = logits_BlV.shape
    logits = logits_BlV.clone()
    if 0 < top_k < V:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = -torch.inf
    if 0 < top_p < 1:
        s, order = logits.sort(dim=-1, descending=False)
        drop = s.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        drop[..., -1] = False
        logits.scatter_(-1, order, s.masked_fill(drop, -torch.inf))
    probs = logits.softmax(dim=-1).view(-1, V)
    return torch.multinomial(probs, 1, generator=generator).view(B, l)
