"""RQ-VAE and RQ-Transformer in the module/state-dict layout of kakaobrain/rq-vae-transformer (our own code, written
from /work/shared/specs/rqvae.md and the behaviour and key tables of /work/shared/fixtures/rq-tiny/golden.md).

RQVAE:  encoder (taming layout: GroupNorm(32, eps 1e-6), swish, Downsample = pad right/bottom + 3x3 stride 2,
        single-head AttnBlock q/k/v/proj_out 1x1 at attn_resolutions) -> quant_conv 1x1 -> residual quantizer
        (ONE shared codebook of n_embed + 1 rows, the last a padding row never selected; stored once per depth as
        quantizer.codebooks.{d}.weight with its EMA buffers cluster_size_ema / embed_ema, as the official state dict)
        -> post_quant_conv 1x1 -> decoder (Upsample = nearest x2 + 3x3 conv, num_res_blocks + 1 blocks per level).
        Codebook training: EMA updates (decay 0.99) on every depth's residual, with restart of unused codes, as the
        official VQEmbedding (ema=True, restart_unused_codes=True); the encoder gets the commitment loss
        mean_d |z_e - sg(quant_cumsum_d)|^2 and the straight-through reconstruction gradient.
RQTransformer: cond_emb, pos_emb_cond / pos_emb_hw / pos_emb_d, input_mlp / head_mlp on the (frozen) RQ-VAE code
        vectors, GPT-2 pre-LN blocks (eps 1e-5, exact GELU, causal), body over spatial positions, head over depths
        (cumsum depth context), classifier = LayerNorm + Linear shared by all depths.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ldm_blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample


# ----------------------------------------------------------------------------------------------------------------
# RQ-VAE
# ----------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution, z_channels, dropout=0.0):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        res, cin = resolution, ch
        self.down = nn.ModuleList()
        n = len(ch_mult)
        for i, m in enumerate(ch_mult):
            lv = nn.Module()
            lv.block, lv.attn = nn.ModuleList(), nn.ModuleList()
            cout = ch * m
            for _ in range(num_res_blocks):
                lv.block.append(ResnetBlock(cin, cout, dropout))
                cin = cout
                if res in attn_resolutions:
                    lv.attn.append(AttnBlock(cin))
            if i != n - 1:
                lv.downsample = Downsample(cin)
                res //= 2
            self.down.append(lv)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(cin, cin, dropout)
        self.mid.attn_1 = AttnBlock(cin)
        self.mid.block_2 = ResnetBlock(cin, cin, dropout)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, lv in enumerate(self.down):
            for j, b in enumerate(lv.block):
                h = b(h)
                if len(lv.attn) > 0:
                    h = lv.attn[j](h)
            if hasattr(lv, "downsample"):
                h = lv.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, num_res_blocks, attn_resolutions, out_ch, resolution, z_channels, dropout=0.0):
        super().__init__()
        n = len(ch_mult)
        cin = ch * ch_mult[-1]
        res = resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(z_channels, cin, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(cin, cin, dropout)
        self.mid.attn_1 = AttnBlock(cin)
        self.mid.block_2 = ResnetBlock(cin, cin, dropout)
        ups = []
        for i in reversed(range(n)):
            lv = nn.Module()
            lv.block, lv.attn = nn.ModuleList(), nn.ModuleList()
            cout = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                lv.block.append(ResnetBlock(cin, cout, dropout))
                cin = cout
                if res in attn_resolutions:
                    lv.attn.append(AttnBlock(cin))
            if i != 0:
                lv.upsample = Upsample(cin)
                res *= 2
            ups.insert(0, lv)
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(len(self.up))):
            lv = self.up[i]
            for j, b in enumerate(lv.block):
                h = b(h)
                if len(lv.attn) > 0:
                    h = lv.attn[j](h)
            if hasattr(lv, "upsample"):
                h = lv.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VQEmbedding(nn.Embedding):
    """n_embed + 1 rows (row n_embed = padding, zero, never selected) with EMA buffers of the n_embed real rows."""

    def __init__(self, n_embed, dim, decay=0.99, eps=1e-5, restart_unused_codes=True):
        super().__init__(n_embed + 1, dim, padding_idx=n_embed)
        self.n_embed, self.decay, self.eps, self.restart = n_embed, decay, eps, restart_unused_codes
        self.weight.requires_grad_(False)
        self.register_buffer("cluster_size_ema", torch.zeros(n_embed))
        self.register_buffer("embed_ema", self.weight[:-1].detach().clone())
        self.initted = False

    @torch.no_grad()
    def find_nearest(self, x):
        """x (..., C) -> code ids (...): argmin |x|^2 + |e|^2 - 2 x.e over the real rows (first index on ties)."""
        flat = x.reshape(-1, x.shape[-1])
        e = self.weight[:-1]
        d = torch.addmm((flat ** 2).sum(1, keepdim=True) + (e ** 2).sum(1)[None], flat, e.t(), alpha=-2.0)
        return d.argmin(1).reshape(x.shape[:-1])

    @torch.no_grad()
    def ema_update(self, x, codes, gen=None):
        flat = x.reshape(-1, x.shape[-1])
        c = codes.reshape(-1)
        onehot = torch.zeros(self.n_embed, flat.shape[0], dtype=flat.dtype)
        onehot.scatter_(0, c[None], 1.0)
        self.cluster_size_ema.mul_(self.decay).add_(onehot.sum(1), alpha=1 - self.decay)
        self.embed_ema.mul_(self.decay).add_(onehot @ flat, alpha=1 - self.decay)
        if self.restart:
            unused = self.cluster_size_ema < 1.0
            k = int(unused.sum())
            if k > 0:
                idx = torch.randint(0, flat.shape[0], (k,), generator=gen)
                cand = flat[idx] + 0.01 * flat.std() * torch.randn(k, flat.shape[1], generator=gen)
                self.embed_ema[unused] = cand
                self.cluster_size_ema[unused] = 1.0
        n = self.cluster_size_ema.sum()
        size = (self.cluster_size_ema + self.eps) / (n + self.n_embed * self.eps) * n
        self.weight[:-1] = self.embed_ema / size[:, None]

    @torch.no_grad()
    def init_from(self, x, gen=None):
        flat = x.reshape(-1, x.shape[-1])
        idx = torch.randint(0, flat.shape[0], (self.n_embed,), generator=gen)
        self.weight[:-1] = flat[idx]
        self.weight[-1] = 0
        self.embed_ema.copy_(flat[idx])
        self.cluster_size_ema.fill_(1.0)
        self.initted = True


class RQBottleneck(nn.Module):
    def __init__(self, n_embed, embed_dim, depth, decay=0.99, restart_unused_codes=True):
        super().__init__()
        cb = VQEmbedding(n_embed, embed_dim, decay, restart_unused_codes=restart_unused_codes)
        self.codebooks = nn.ModuleList([cb] * depth)  # shared: the same module under every depth name
        self.depth, self.n_embed = depth, n_embed

    @property
    def codebook(self):
        return self.codebooks[0]

    def quantize(self, z, update=False, gen=None):
        """z (B,h,w,C) -> (list of quant_cumsum per depth, codes (B,h,w,D)); with update, EMA codebook updates on
        every depth's residual (as the official training mode)."""
        residual = z.detach()
        agg = torch.zeros_like(residual)
        cums, codes = [], []
        for d in range(self.depth):
            cb = self.codebooks[d]
            code = cb.find_nearest(residual)
            if update:
                cb.ema_update(residual, code, gen)
            q = F.embedding(code, cb.weight)
            residual = residual - q
            agg = agg + q
            cums.append(agg)
            codes.append(code)
        return cums, torch.stack(codes, -1)

    def forward(self, z, update=False, gen=None):
        cums, codes = self.quantize(z, update, gen)
        commitment = torch.stack([(z - c.detach()).pow(2).mean() for c in cums]).mean()
        quant = z + (cums[-1] - z).detach()
        return quant, commitment, codes

    def embed_code_with_depth(self, codes):
        return torch.stack([F.embedding(codes[..., d], self.codebooks[d].weight) for d in range(codes.shape[-1])], -2)


class RQVAE(nn.Module):
    def __init__(self, embed_dim=16, n_embed=128, code_shape=(4, 4, 4), ddconfig=None, decay=0.99,
                 restart_unused_codes=True, latent_loss_weight=0.25):
        super().__init__()
        dd = dict(ddconfig)
        self.ddconfig, self.embed_dim, self.n_embed, self.code_shape = dd, embed_dim, n_embed, tuple(code_shape)
        self.latent_loss_weight = latent_loss_weight
        self.encoder = Encoder(dd["ch"], dd["ch_mult"], dd["num_res_blocks"], dd["attn_resolutions"], dd["in_channels"],
                               dd["resolution"], dd["z_channels"], dd.get("dropout", 0.0))
        self.decoder = Decoder(dd["ch"], dd["ch_mult"], dd["num_res_blocks"], dd["attn_resolutions"], dd["out_ch"],
                               dd["resolution"], dd["z_channels"], dd.get("dropout", 0.0))
        self.quantizer = RQBottleneck(n_embed, embed_dim, code_shape[-1], decay, restart_unused_codes)
        self.quant_conv = nn.Conv2d(dd["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, dd["z_channels"], 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x)).permute(0, 2, 3, 1)  # NHWC

    def decode(self, z_q):
        return self.decoder(self.post_quant_conv(z_q.permute(0, 3, 1, 2)))

    def forward(self, x, update=False, gen=None):
        z = self.encode(x)
        quant, commitment, codes = self.quantizer(z, update, gen)
        return self.decode(quant), commitment, codes

    @torch.no_grad()
    def get_codes(self, x):
        return self.quantizer.quantize(self.encode(x))[1]

    def get_code_emb_with_depth(self, codes):
        return self.quantizer.embed_code_with_depth(codes)

    @torch.no_grad()
    def decode_code(self, codes):
        return self.decode(self.get_code_emb_with_depth(codes).sum(-2))

    @torch.no_grad()
    def decode_partial_code(self, codes, upto, decode_type="add"):
        e = self.get_code_emb_with_depth(codes)
        z = e[..., : upto + 1, :].sum(-2) if decode_type == "add" else e[..., upto, :]
        return self.decode(z)


# ----------------------------------------------------------------------------------------------------------------
# RQ-Transformer
# ----------------------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, c, n_head, attn_pdrop=0.0, resid_pdrop=0.0):
        super().__init__()
        self.key = nn.Linear(c, c)
        self.query = nn.Linear(c, c)
        self.value = nn.Linear(c, c)
        self.attn_drop = nn.Dropout(attn_pdrop)
        self.resid_drop = nn.Dropout(resid_pdrop)
        self.proj = nn.Linear(c, c)
        self.n_head = n_head

    def forward(self, x):
        B, T, C = x.shape
        h, hd = self.n_head, C // self.n_head
        q = self.query(x).view(B, T, h, hd).transpose(1, 2)
        k = self.key(x).view(B, T, h, hd).transpose(1, 2)
        v = self.value(x).view(B, T, h, hd).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1) * (1.0 / math.sqrt(hd)))
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf"))
        att = self.attn_drop(torch.softmax(att, -1))
        y = torch.matmul(att, v).transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.proj(y))


class Block(nn.Module):
    def __init__(self, c, n_head, attn_pdrop=0.0, resid_pdrop=0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(c, eps=1e-5)
        self.ln2 = nn.LayerNorm(c, eps=1e-5)
        self.attn = SelfAttention(c, n_head, attn_pdrop, resid_pdrop)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c), nn.Dropout(resid_pdrop))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Stack(nn.Module):
    def __init__(self, n_layer, c, n_head, attn_pdrop=0.0, resid_pdrop=0.0):
        super().__init__()
        self.blocks = nn.ModuleList([Block(c, n_head, attn_pdrop, resid_pdrop) for _ in range(n_layer)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class Classifier(nn.Module):
    def __init__(self, c, v):
        super().__init__()
        self.layer_norm = nn.LayerNorm(c, eps=1e-5)
        self.linear = nn.Linear(c, v)

    def forward(self, x):
        return self.linear(self.layer_norm(x))


class RQTransformer(nn.Module):
    def __init__(self, vocab_size=128, block_size=(4, 4, 4), embed_dim=64, input_embed_dim=16, vocab_size_cond=10,
                 body_layers=2, head_layers=1, n_head=2, attn_pdrop=0.0, resid_pdrop=0.1, embd_pdrop=0.0,
                 head_n_head=None):
        super().__init__()
        H, W, D = block_size
        C = embed_dim
        self.V, self.H, self.W, self.D, self.C = vocab_size, H, W, D, C
        self.hparams = dict(vocab_size=vocab_size, block_size=list(block_size), embed_dim=C,
                            input_embed_dim=input_embed_dim, vocab_size_cond=vocab_size_cond, body_layers=body_layers,
                            head_layers=head_layers, n_head=n_head, head_n_head=head_n_head or n_head)
        self.pos_emb_cond = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_emb_hw = nn.Parameter(torch.zeros(1, H * W, C))
        self.pos_emb_d = nn.Parameter(torch.zeros(1, D, C))
        self.cond_emb = nn.Embedding(vocab_size_cond, C)
        self.input_mlp = nn.Linear(input_embed_dim, C)
        self.head_mlp = nn.Linear(input_embed_dim, C)
        self.drop = nn.Dropout(embd_pdrop)
        self.body_transformer = Stack(body_layers, C, n_head, attn_pdrop, resid_pdrop)
        self.head_transformer = Stack(head_layers, C, head_n_head or n_head, attn_pdrop, resid_pdrop)
        self.classifier = Classifier(C, vocab_size)
        self.apply(self._init)
        for p in (self.pos_emb_cond, self.pos_emb_hw, self.pos_emb_d):
            nn.init.normal_(p, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            m.weight.data.normal_(0.0, 0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.data.zero_()
        elif isinstance(m, nn.LayerNorm):
            m.bias.data.zero_()
            m.weight.data.fill_(1.0)

    def body_input(self, emb, cond):
        """emb (B, L, D, Cin) code vectors of the first L positions (L <= H*W-1 used), cond (B,) -> body input
        (B, L+1, C): [cond token, sum_d input_mlp(e_d) + pos_emb_hw[i]]."""
        B, L = emb.shape[:2]
        start = self.cond_emb(cond)[:, None] + self.pos_emb_cond
        tok = self.input_mlp(emb).sum(2) + self.pos_emb_hw[:, :L]
        return self.drop(torch.cat([start, tok], 1))

    def head_input(self, body_out, emb):
        """body_out (N, C), emb (N, k, Cin) code vectors of depths < k (k <= D-1) -> head input (N, k+1, C)."""
        ctx = self.head_mlp(emb.cumsum(1))
        x = torch.cat([body_out[:, None], ctx], 1)
        return x + self.pos_emb_d[:, : x.shape[1]]

    def forward(self, codes, codebook, cond, return_inner=False):
        """codes (B,H,W,D), codebook (n_embed+1, Cin) -> logits (B,H,W,D,V) (teacher forcing)."""
        B = codes.shape[0]
        HW, D = self.H * self.W, self.D
        emb = F.embedding(codes.reshape(B, HW, D), codebook)  # B, HW, D, Cin
        body_in = self.body_input(emb[:, : HW - 1], cond)
        body_out = self.body_transformer(body_in)
        head_in = self.head_input(body_out.reshape(B * HW, -1), emb[:, :, : D - 1].reshape(B * HW, D - 1, -1))
        head_out = self.head_transformer(head_in)
        logits = self.classifier(head_out).reshape(B, self.H, self.W, D, self.V)
        if return_inner:
            return logits, dict(body_in=body_in, body_out=body_out, head_in=head_in, head_out=head_out)
        return logits

    @torch.no_grad()
    def sample(self, codebook, cond, temperature=1.0, top_k=None, top_p=None, gen=None, greedy=False):
        """Autoregressive sampling in (h, w, d) raster order (uncached: the prefix is re-run; same logits as the
        official cached sampler up to rounding). Returns codes (B,H,W,D)."""
        B = cond.shape[0]
        HW, D = self.H * self.W, self.D
        codes = torch.zeros(B, HW, D, dtype=torch.long)
        for i in range(HW):
            emb = F.embedding(codes[:, :i], codebook)
            body_out = self.body_transformer(self.body_input(emb, cond))[:, -1]
            for d in range(D):
                e = F.embedding(codes[:, i, :d], codebook)
                h = self.head_transformer(self.head_input(body_out, e))[:, -1]
                logits = self.classifier(h)
                codes[:, i, d] = logits.argmax(-1) if greedy else sample_from_logits(logits, temperature, top_k, top_p, gen)
        return codes.reshape(B, self.H, self.W, D)


def sample_from_logits(logits, temperature=1.0, top_k=None, top_p=None, gen=None):
    """logits/temperature; keep logits >= the k-th largest; softmax; top-p (keep the top-1 always, drop tokens after
    the cumulative probability exceeds p); multinomial."""
    logits = logits / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), -1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    if top_p is not None and top_p < 1.0:
        sp, si = torch.sort(probs, -1, descending=True)
        cum = sp.cumsum(-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        sp = sp.masked_fill(remove, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    return torch.multinomial(probs, 1, generator=gen)[..., 0]


# ----------------------------------------------------------------------------------------------------------------
# Construction from configs / state dicts
# ----------------------------------------------------------------------------------------------------------------


def rqvae_from_config(arch):
    """arch: the stage1 config.yaml's `arch` dict."""
    h, dd = arch["hparams"], arch["ddconfig"]
    return RQVAE(h["embed_dim"], h["n_embed"], h["code_shape"], dd, h.get("decay", 0.99),
                 h.get("restart_unused_codes", True), h.get("latent_loss_weight", 0.25))


def rqtransformer_from_config(arch):
    """arch: the stage2 config.yaml's `arch` dict."""
    return RQTransformer(arch["vocab_size"], arch["block_size"], arch["embed_dim"], arch["input_embed_dim"],
                         arch["vocab_size_cond"], arch["body"]["n_layer"], arch["head"]["n_layer"],
                         arch["body"]["block"]["n_head"], 0.0, arch["body"]["block"].get("resid_pdrop", 0.1),
                         arch.get("embd_pdrop", 0.0), arch["head"]["block"].get("n_head"))
