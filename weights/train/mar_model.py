"""MAR (masked autoregressive generation with a per-token diffusion head) and its KL VAE, written from webvar's
spec (shared/specs/mar.md) and the behaviour pinned down by shared/fixtures/mar-tiny/golden.md.

Module and parameter names reproduce the official checkpoints' state_dict keys (LTH14/mar), so that
`AutoencoderKL.state_dict()` saved as {'model': sd} is a kl16.ckpt-style vae.pth and `MAR.state_dict()` saved as
{'model': sd, 'model_ema': ema_sd} is a checkpoint-last.pth-style mar.pth:

  VAE (LDM AutoencoderKL): encoder.conv_in, encoder.down.N.{block.M.{norm1,conv1,norm2,conv2[,nin_shortcut]},
       attn.M.{norm,q,k,v,proj_out}, downsample.conv}, encoder.mid.{block_1,attn_1,block_2}, encoder.norm_out,
       encoder.conv_out, decoder.conv_in, decoder.mid.*, decoder.up.N.{block.M, attn.M, upsample.conv}
       (N = 0 is the FINEST level; built coarsest first), decoder.norm_out, decoder.conv_out, quant_conv,
       post_quant_conv
  MAR: class_emb, fake_latent, z_proj, z_proj_ln, encoder_pos_embed_learned, encoder_blocks.N.{norm1, attn.qkv,
       attn.proj, norm2, mlp.fc1, mlp.fc2}, encoder_norm, decoder_embed, mask_token, decoder_pos_embed_learned,
       decoder_blocks.N.*, decoder_norm, diffusion_pos_embed_learned, diffloss.net.{time_embed.mlp.0/2,
       cond_embed, input_proj, res_blocks.N.{in_ln, mlp.0, mlp.2, adaLN_modulation.1},
       final_layer.{linear, adaLN_modulation.1}}

Behaviour (as in the official code; check_mar_model.py verifies it against the fixture):
  * tokens: patchify(latent * scale) with layout (h, w, c, p, q): channel-major within a patch;
  * encoder: z_proj(tokens) -> buffer_size leading rows := class embedding (fake_latent for unconditional) ->
    + encoder_pos_embed_learned -> z_proj_ln -> drop masked tokens (buffer kept) -> pre-LN blocks -> encoder_norm;
  * decoder: decoder_embed -> scatter into a buffer+seq_len grid of mask_token -> + decoder_pos_embed_learned ->
    blocks -> decoder_norm -> drop buffer -> + diffusion_pos_embed_learned;
  * diffusion head: cosine schedule over 1000 steps, LEARNED_RANGE variance, epsilon prediction; sampling
    respaced ("N" sections as in improved DDPM); eps-CFG with the same noise for both halves;
  * sampler: random orders, cosine mask schedule, mask_len = max(1, min(#masked - 1, floor(L cos(pi/2 (k+1)/N)))),
    linear CFG 1 + (cfg - 1) (L - mask_len) / L.
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ldm_blocks import AttnBlock, Downsample, Normalize, ResnetBlock, Upsample

# --------------------------------------------------------------------------------------------------------------
# KL VAE (LDM AutoencoderKL layout)
# --------------------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """LDM encoder. Attention after each res block of level i where curr_res (resolution / 2^i) is in
    attn_resolutions; always in the mid block. Output 2*z_channels (mean, logvar)."""

    def __init__(self, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(16,), resolution=256,
                 in_channels=3, z_channels=16):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i != self.num_resolutions - 1:
                down.downsample = Downsample(block_in)
                curr_res //= 2
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i, down in enumerate(self.down):
            for j in range(self.num_res_blocks):
                h = down.block[j](h)
                if len(down.attn) > 0:
                    h = down.attn[j](h)
            if i != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """LDM decoder: num_res_blocks + 1 res blocks per level; up[0] is the finest level."""

    def __init__(self, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=2, attn_resolutions=(), resolution=256,
                 out_ch=3, z_channels=16):
        super().__init__()
        self.num_resolutions, self.num_res_blocks = len(ch_mult), num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        ups = []
        for i in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i != 0:
                up.upsample = Upsample(block_in)
                curr_res *= 2
            ups.insert(0, up)
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(self.num_resolutions)):
            up = self.up[i]
            for j in range(self.num_res_blocks + 1):
                h = up.block[j](h)
                if len(up.attn) > 0:
                    h = up.attn[j](h)
            if i != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """encode(x) -> moments (B, 2*embed_dim, h, w) = quant_conv(encoder(x)): [:embed_dim] mean, [embed_dim:] logvar.
    decode(z) = decoder(post_quant_conv(z)). Latents enter MAR multiplied by the scale factor."""

    def __init__(self, embed_dim=16, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=2, enc_attn_resolutions=None,
                 resolution=None, dec_attn_resolutions=()):
        super().__init__()
        ch_mult = tuple(ch_mult)
        if resolution is None:  # the official kl16 builds with resolution 256 and attention at 16 = the last level
            resolution = 256
        if enc_attn_resolutions is None:
            enc_attn_resolutions = (resolution // 2 ** (len(ch_mult) - 1),)
        self.hparams = dict(embed_dim=embed_dim, ch=ch, ch_mult=list(ch_mult), num_res_blocks=num_res_blocks,
                            enc_attn_resolutions=list(enc_attn_resolutions), resolution=resolution,
                            dec_attn_resolutions=list(dec_attn_resolutions))
        self.embed_dim = embed_dim
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, tuple(enc_attn_resolutions), resolution, 3, embed_dim)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, tuple(dec_attn_resolutions), resolution, 3, embed_dim)
        self.quant_conv = nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)

    @property
    def stride(self):
        return 2 ** (len(self.hparams["ch_mult"]) - 1)

    def encode(self, x):
        return self.quant_conv(self.encoder(x))

    @staticmethod
    def split_moments(moments):
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def sample(self, moments, generator=None):
        mean, logvar = self.split_moments(moments)
        return mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# --------------------------------------------------------------------------------------------------------------
# Gaussian diffusion (improved DDPM as used by MAR: cosine schedule, LEARNED_RANGE, epsilon, MSE + VLB)
# --------------------------------------------------------------------------------------------------------------


def cosine_betas(num_steps=1000, max_beta=0.999):
    def alpha_bar(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array([min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
                     for i in range(num_steps)], dtype=np.float64)


def space_timesteps(num_timesteps, section_counts):
    """The kept original timesteps for a respacing string such as "100" or "10,15" (improved DDPM's rule,
    including its float accumulation and Python rounding)."""
    if isinstance(section_counts, str):
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx, all_steps = 0, []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < section_count:
            raise ValueError(f"cannot divide section of {size} steps into {section_count}")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx, taken = 0.0, []
        for _ in range(section_count):
            taken.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        all_steps += taken
        start_idx += size
    return set(all_steps)


def _extract(arr, t, ndim):
    """numpy float64 table gathered at t, cast to f32 (as _extract_into_tensor), shaped to broadcast."""
    out = torch.from_numpy(arr)[t].float()
    return out.view(-1, *([1] * (ndim - 1)))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


class GaussianDiffusion:
    """A (possibly respaced) diffusion over the kept timesteps of the 1000-step cosine schedule. Respaced index i
    is fed to the network as timestep_map[i] (the original timestep)."""

    def __init__(self, timestep_respacing="", num_steps=1000):
        base = cosine_betas(num_steps)
        if not timestep_respacing:
            timestep_respacing = str(num_steps)
        use = space_timesteps(num_steps, timestep_respacing)
        base_acp = np.cumprod(1.0 - base, axis=0)
        last, betas, tmap = 1.0, [], []
        for i, acp in enumerate(base_acp):
            if i in use:
                betas.append(1 - acp / last)
                last = acp
                tmap.append(i)
        self.timestep_map = np.array(tmap, dtype=np.int64)
        b = np.array(betas, dtype=np.float64)
        self.betas = b
        self.num_timesteps = len(b)
        alphas = 1.0 - b
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = (np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
                                               if len(self.posterior_variance) > 1 else np.array([]))
        self.posterior_mean_coef1 = b * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self.log_betas = np.log(b)

    def q_sample(self, x0, t, noise):
        return _extract(self.sqrt_alphas_cumprod, t, x0.ndim) * x0 + \
            _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.ndim) * noise

    def q_posterior(self, x0, xt, t):
        mean = _extract(self.posterior_mean_coef1, t, xt.ndim) * x0 + _extract(self.posterior_mean_coef2, t, xt.ndim) * xt
        return mean, _extract(self.posterior_log_variance_clipped, t, xt.ndim)

    def p_mean_variance(self, model_output, x, t):
        """model_output (N, 2C): eps ++ variance interpolation v in [-1, 1] (LEARNED_RANGE)."""
        C = x.shape[1]
        eps, v = model_output[:, :C], model_output[:, C:]
        min_log = _extract(self.posterior_log_variance_clipped, t, x.ndim)
        max_log = _extract(self.log_betas, t, x.ndim)
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = _extract(self.sqrt_recip_alphas_cumprod, t, x.ndim) * x - _extract(self.sqrt_recipm1_alphas_cumprod, t, x.ndim) * eps
        mean, _ = self.q_posterior(x0, x, t)
        return dict(mean=mean, log_variance=log_var, pred_xstart=x0)

    def training_losses(self, net, x0, t, c, noise):
        """Per-row loss = MSE(eps) + VLB term (bits per dim) that trains only the variance (mean detached)."""
        xt = self.q_sample(x0, t, noise)
        out = net(xt, torch.from_numpy(self.timestep_map)[t], c)
        C = x0.shape[1]
        eps = out[:, :C]
        mse = mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), out[:, C:]], dim=1)
        true_mean, true_logvar = self.q_posterior(x0, xt, t)
        p = self.p_mean_variance(frozen, xt, t)
        kl = mean_flat(normal_kl(true_mean, true_logvar, p["mean"], p["log_variance"])) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, p["mean"], 0.5 * p["log_variance"])) / math.log(2.0)
        vb = torch.where(t == 0, nll, kl)
        return dict(loss=mse + vb, mse=mse, vb=vb)

    @torch.no_grad()
    def p_sample_loop(self, model_fn, noise, temperature=1.0, randn=None, trace=None):
        """model_fn(x, t_original) -> (N, 2C). randn(shape) draws the per-step noise (torch.randn by default);
        the draw is made at t = 0 too (multiplied by 0), as the official loop does."""
        randn = randn or (lambda shape: torch.randn(shape))
        x = noise
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((x.shape[0],), i, dtype=torch.long)
            out_m = model_fn(x, torch.from_numpy(self.timestep_map)[t])
            out = self.p_mean_variance(out_m, x, t)
            z = randn(x.shape)
            nonzero = (t != 0).float().view(-1, 1)
            x_new = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * z * temperature
            if trace is not None:
                trace.append(dict(x_t=x, model_out=out_m, **out, sample=x_new))
            x = x_new
        return x


# --------------------------------------------------------------------------------------------------------------
# Diffusion head (SimpleMLPAdaLN)
# --------------------------------------------------------------------------------------------------------------


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden, freq_size=256):
        super().__init__()
        self.freq_size = freq_size
        self.mlp = nn.Sequential(nn.Linear(freq_size, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    @staticmethod
    def timestep_embedding(t, dim, max_period=10000):
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t):
        return self.mlp(self.timestep_embedding(t, self.freq_size))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.in_ln = nn.LayerNorm(c, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(c, c), nn.SiLU(), nn.Linear(c, c))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(c, 3 * c))

    def forward(self, x, y):
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))


class FinalLayer(nn.Module):
    def __init__(self, c, out_channels):
        super().__init__()
        self.norm_final = nn.LayerNorm(c, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(c, out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(c, 2 * c))

    def forward(self, x, y):
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class SimpleMLPAdaLN(nn.Module):
    def __init__(self, in_channels, model_channels, out_channels, z_channels, num_res_blocks):
        super().__init__()
        self.in_channels = in_channels
        self.time_embed = TimestepEmbedder(model_channels)
        self.cond_embed = nn.Linear(z_channels, model_channels)
        self.input_proj = nn.Linear(in_channels, model_channels)
        self.res_blocks = nn.ModuleList([ResBlock(model_channels) for _ in range(num_res_blocks)])
        self.final_layer = FinalLayer(model_channels, out_channels)
        self.initialize_weights()

    def initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_embed.mlp[2].weight, std=0.02)
        for b in self.res_blocks:  # adaLN-zero: every block starts as the identity
            nn.init.zeros_(b.adaLN_modulation[-1].weight)
            nn.init.zeros_(b.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x, t, c):
        x = self.input_proj(x)
        y = self.time_embed(t) + self.cond_embed(c)
        for b in self.res_blocks:
            x = b(x, y)
        return self.final_layer(x, y)

    def forward_with_cfg(self, x, t, c, cfg_scale):
        """Rows [:N/2] cond, [N/2:] uncond; both halves run on x[:N/2]; only eps is guided."""
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, c)
        eps, rest = out[:, : self.in_channels], out[:, self.in_channels:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)


class DiffLoss(nn.Module):
    def __init__(self, target_channels, z_channels, depth, width, num_sampling_steps="100"):
        super().__init__()
        self.in_channels = target_channels
        self.net = SimpleMLPAdaLN(target_channels, width, target_channels * 2, z_channels, depth)
        self.train_diffusion = GaussianDiffusion("")
        self.set_sampling_steps(num_sampling_steps)

    def set_sampling_steps(self, num_sampling_steps):
        self.num_sampling_steps = str(num_sampling_steps)
        self.gen_diffusion = GaussianDiffusion(self.num_sampling_steps)

    def forward(self, target, z, mask=None, generator=None, t_last_frac=0.0, t_last_weight=1.0):
        """Official: t uniform over the 1000 steps, loss averaged over the masked rows. t_last_frac > 0 (our
        addition, training only) moves that fraction of rows to t = 999 and weights their loss by t_last_weight.
        Why: every respaced sampler starts at t = 999, where x0 = 2.0e4 * (x_t - eps) (acp = 2.4e-9), and the
        first step's mean is ~sqrt(acp_prev) * x0; with 50 steps an eps error d gives a latent error ~620 d, so d
        must reach ~1e-3, which uniform t (0.1% of rows at 999) does not teach in a short run. Only the eps MSE is
        weighted: the VLB term there (which trains the variance only) is huge while eps is imprecise."""
        n = target.shape[0]
        t = torch.randint(0, self.train_diffusion.num_timesteps, (n,), generator=generator)
        weight = None
        if t_last_frac > 0:
            last = torch.rand(n, generator=generator) < t_last_frac
            t = torch.where(last, torch.full_like(t, self.train_diffusion.num_timesteps - 1), t)
            weight = torch.where(last, torch.full((n,), float(t_last_weight)), torch.ones(n))
        noise = torch.randn(target.shape, generator=generator)
        d = self.train_diffusion.training_losses(self.net, target, t, z, noise)
        loss = d["loss"] if weight is None else d["mse"] * weight + d["vb"]  # the VLB (variance only) unweighted
        if mask is not None:
            return (loss * mask).sum() / mask.sum(), d
        return loss.mean(), d

    @torch.no_grad()
    def sample(self, z, temperature=1.0, cfg=1.0, randn=None, trace=None):
        """z (N, D) (CFG: 2n rows, cond first) -> (N, C). randn(shape) supplies every Gaussian draw in the
        official order (initial noise, then one per step)."""
        randn = randn or (lambda shape: torch.randn(shape))
        if cfg != 1.0:
            noise = randn((z.shape[0] // 2, self.in_channels))
            noise = torch.cat([noise, noise], dim=0)

            def fn(x, t):
                return self.net.forward_with_cfg(x, t, z, cfg)
        else:
            noise = randn((z.shape[0], self.in_channels))

            def fn(x, t):
                return self.net(x, t, z)
        return self.gen_diffusion.p_sample_loop(fn, noise, temperature, randn, trace)


# --------------------------------------------------------------------------------------------------------------
# MAR
# --------------------------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim, heads, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        hd = C // self.heads
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, hd).permute(2, 0, 3, 1, 4)  # each B, H, N, hd
        a = torch.softmax((q * hd ** -0.5) @ k.transpose(-2, -1), dim=-1)
        o = (self.attn_drop(a) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(o))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """timm ViT block: pre-LN (eps 1e-6), qkv with bias, exact GELU."""

    def __init__(self, dim, heads, mlp_ratio=4.0, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, attn_drop, proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), proj_drop)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def truncnorm_mask_rates(rng, n, mask_ratio_min=0.7, std=0.25):
    """Samples of N(1, std) truncated to [mask_ratio_min, 1] (scipy truncnorm((min-1)/std, 0, loc=1, scale=std)
    in the official code), by rejection."""
    out = []
    while len(out) < n:
        v = rng.normal(1.0, std, size=4 * n + 8)
        out.extend(v[(v >= mask_ratio_min) & (v <= 1.0)].tolist())
    return np.array(out[:n])


class MAR(nn.Module):
    def __init__(self, img_size=32, vae_stride=8, patch_size=1, encoder_embed_dim=128, encoder_depth=3,
                 encoder_num_heads=4, decoder_embed_dim=128, decoder_depth=3, decoder_num_heads=4, mlp_ratio=4.0,
                 vae_embed_dim=16, mask_ratio_min=0.7, label_drop_prob=0.1, class_num=10, attn_dropout=0.0,
                 proj_dropout=0.0, buffer_size=4, diffloss_d=3, diffloss_w=256, num_sampling_steps="100",
                 diffusion_batch_mul=4):
        super().__init__()
        self.hparams = dict(img_size=img_size, vae_stride=vae_stride, patch_size=patch_size,
                            encoder_embed_dim=encoder_embed_dim, encoder_depth=encoder_depth,
                            encoder_num_heads=encoder_num_heads, decoder_embed_dim=decoder_embed_dim,
                            decoder_depth=decoder_depth, decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio,
                            vae_embed_dim=vae_embed_dim, mask_ratio_min=mask_ratio_min,
                            label_drop_prob=label_drop_prob, class_num=class_num, attn_dropout=attn_dropout,
                            proj_dropout=proj_dropout, buffer_size=buffer_size, diffloss_d=diffloss_d,
                            diffloss_w=diffloss_w, num_sampling_steps=str(num_sampling_steps),
                            diffusion_batch_mul=diffusion_batch_mul)
        self.vae_embed_dim, self.patch_size = vae_embed_dim, patch_size
        self.seq_h = self.seq_w = img_size // vae_stride // patch_size
        self.seq_len = self.seq_h * self.seq_w
        self.token_embed_dim = vae_embed_dim * patch_size ** 2
        self.buffer_size = buffer_size
        self.label_drop_prob, self.mask_ratio_min = label_drop_prob, mask_ratio_min
        self.diffusion_batch_mul = diffusion_batch_mul

        self.class_emb = nn.Embedding(class_num, encoder_embed_dim)
        self.fake_latent = nn.Parameter(torch.zeros(1, encoder_embed_dim))
        self.z_proj = nn.Linear(self.token_embed_dim, encoder_embed_dim, bias=True)
        self.z_proj_ln = nn.LayerNorm(encoder_embed_dim, eps=1e-6)
        self.encoder_pos_embed_learned = nn.Parameter(torch.zeros(1, self.seq_len + buffer_size, encoder_embed_dim))
        self.encoder_blocks = nn.ModuleList([Block(encoder_embed_dim, encoder_num_heads, mlp_ratio, attn_dropout,
                                                   proj_dropout) for _ in range(encoder_depth)])
        self.encoder_norm = nn.LayerNorm(encoder_embed_dim, eps=1e-6)
        self.decoder_embed = nn.Linear(encoder_embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed_learned = nn.Parameter(torch.zeros(1, self.seq_len + buffer_size, decoder_embed_dim))
        self.decoder_blocks = nn.ModuleList([Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, attn_dropout,
                                                   proj_dropout) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.zeros(1, self.seq_len, decoder_embed_dim))
        self.initialize_weights()
        # after the MAR init, so that the diffusion head keeps its own (adaLN-zero) init
        self.diffloss = DiffLoss(self.token_embed_dim, decoder_embed_dim, diffloss_d, diffloss_w, num_sampling_steps)

    def initialize_weights(self):
        for p in (self.class_emb.weight, self.fake_latent, self.mask_token, self.encoder_pos_embed_learned,
                  self.decoder_pos_embed_learned, self.diffusion_pos_embed_learned):
            nn.init.normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --- tokens <-> latents -----------------------------------------------------------------------------------
    def patchify(self, x):
        """(B, C, H, W) -> (B, h*w, C*p*p), layout (h, w, c, p, q)."""
        B, C, H, W = x.shape
        p = self.patch_size
        h, w = H // p, W // p
        x = x.reshape(B, C, h, p, w, p)
        x = torch.einsum("nchpwq->nhwcpq", x)
        return x.reshape(B, h * w, C * p * p)

    def unpatchify(self, x):
        B = x.shape[0]
        p, c, h, w = self.patch_size, self.vae_embed_dim, self.seq_h, self.seq_w
        x = x.reshape(B, h, w, c, p, p)
        x = torch.einsum("nhwcpq->nchpwq", x)
        return x.reshape(B, c, h * p, w * p)

    def sample_orders(self, bsz, rng=None):
        """One random permutation per sample (np.random.shuffle, as the official code)."""
        rng = rng if rng is not None else np.random
        orders = []
        for _ in range(bsz):
            o = np.array(list(range(self.seq_len)))
            rng.shuffle(o)
            orders.append(o)
        return torch.from_numpy(np.array(orders)).long()

    def random_masking(self, x, orders, mask_rate):
        bsz, seq_len, _ = x.shape
        n = int(np.ceil(seq_len * mask_rate))
        mask = torch.zeros(bsz, seq_len)
        return torch.scatter(mask, -1, orders[:, :n], torch.ones(bsz, seq_len))

    # --- encoder / decoder ------------------------------------------------------------------------------------
    def forward_mae_encoder(self, x, mask, class_embedding, drop_generator=None):
        """x (B, L, Ct) tokens, mask (B, L) 1 = masked, class_embedding (B, enc) -> (B, buffer + #known, enc)."""
        x = self.z_proj(x)
        bsz, _, d = x.shape
        x = torch.cat([torch.zeros(bsz, self.buffer_size, d), x], dim=1)
        mask_with_buffer = torch.cat([torch.zeros(bsz, self.buffer_size), mask.float()], dim=1)
        if self.training and self.label_drop_prob > 0:
            drop = (torch.rand(bsz, generator=drop_generator) < self.label_drop_prob).unsqueeze(-1).float()
            class_embedding = drop * self.fake_latent + (1 - drop) * class_embedding
        x[:, : self.buffer_size] = class_embedding.unsqueeze(1)
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned)
        x = x[(1 - mask_with_buffer).nonzero(as_tuple=True)].reshape(bsz, -1, d)
        for b in self.encoder_blocks:
            x = b(x)
        return self.encoder_norm(x)

    def forward_mae_decoder(self, x, mask):
        """x (B, buffer + #known, enc) -> z (B, L, dec)."""
        x = self.decoder_embed(x)
        bsz = x.shape[0]
        mask_with_buffer = torch.cat([torch.zeros(bsz, self.buffer_size), mask.float()], dim=1)
        pad = self.mask_token.repeat(bsz, mask_with_buffer.shape[1], 1).to(x.dtype)
        pad[(1 - mask_with_buffer).nonzero(as_tuple=True)] = x.reshape(x.shape[0] * x.shape[1], x.shape[2])
        x = pad + self.decoder_pos_embed_learned
        for b in self.decoder_blocks:
            x = b(x)
        x = self.decoder_norm(x)[:, self.buffer_size:]
        return x + self.diffusion_pos_embed_learned

    # --- training ---------------------------------------------------------------------------------------------
    def forward(self, latents, labels, rng, generator=None, masked_only=False, t_last_frac=0.0, t_last_weight=1.0):
        """latents (B, C, h, w) already scaled; rng a numpy RandomState (orders, mask rate); generator a
        torch.Generator (label dropout, diffusion t and noise). Returns (loss, details).
        masked_only runs the diffusion head only on the masked tokens' rows: the official code runs it on every
        token and weights the loss by the mask, so the loss and its gradient are the same in distribution, at
        ~80% of the cost (the head dominates the training FLOPs at 16 tokens)."""
        class_embedding = self.class_emb(labels)
        x = self.patchify(latents)
        gt = x.clone().detach()
        orders = self.sample_orders(x.shape[0], rng)
        rate = truncnorm_mask_rates(rng, 1, self.mask_ratio_min)[0]
        mask = self.random_masking(x, orders, rate)
        z = self.forward_mae_decoder(self.forward_mae_encoder(x, mask, class_embedding, generator), mask)
        bsz, L, _ = gt.shape
        m = self.diffusion_batch_mul
        target = gt.reshape(bsz * L, -1).repeat(m, 1)
        z = z.reshape(bsz * L, -1).repeat(m, 1)
        mask = mask.reshape(bsz * L).repeat(m)
        if masked_only:
            keep = mask.bool()
            target, z, mask = target[keep], z[keep], mask[keep]
        loss, d = self.diffloss(target, z, mask, generator, t_last_frac, t_last_weight)
        return loss, dict(mask_rate=float(rate), mse=float((d["mse"] * mask).sum() / mask.sum()),
                          vb=float((d["vb"] * mask).sum() / mask.sum()))

    @torch.no_grad()
    def eps_error(self, latents, labels, timesteps=(999, 990, 950, 500, 100), seed=3):
        """RMS error of the predicted eps at the given (original) timesteps, every token masked (the state at
        the first sampling iteration), on latents (B, C, h, w) already scaled."""
        g = torch.Generator().manual_seed(seed)
        x = self.patchify(latents)
        mask = torch.ones(x.shape[0], self.seq_len)
        z = self.forward_mae_decoder(self.forward_mae_encoder(x, mask, self.class_emb(labels)), mask)
        z, x0 = z.reshape(-1, z.shape[-1]), x.reshape(-1, x.shape[-1])
        dif, out = self.diffloss.train_diffusion, {}
        for t in timesteps:
            tt = torch.full((x0.shape[0],), int(t))
            eps = torch.randn(x0.shape, generator=g)
            pred = self.diffloss.net(dif.q_sample(x0, tt, eps), tt, z)[:, : x0.shape[1]]
            out[int(t)] = float((pred - eps).pow(2).mean().sqrt())
        return out

    # --- sampling ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_tokens(self, bsz, num_iter=64, cfg=1.0, cfg_schedule="linear", labels=None, temperature=1.0,
                      orders=None, randn=None, hook=None):
        """Returns the latent (B, C, h, w) (scaled; divide by the scale factor before vae.decode).
        orders (B, L) and randn(shape) replace the random generation order and Gaussian draws (for replays);
        hook(step, dict) sees every iteration's intermediate tensors."""
        mask = torch.ones(bsz, self.seq_len)
        tokens = torch.zeros(bsz, self.seq_len, self.token_embed_dim)
        if orders is None:
            orders = self.sample_orders(bsz)
        for step in range(num_iter):
            cur_tokens = tokens.clone()
            if labels is not None:
                class_embedding = self.class_emb(labels)
            else:
                class_embedding = self.fake_latent.repeat(bsz, 1)
            if cfg != 1.0:
                tokens = torch.cat([tokens, tokens], dim=0)
                class_embedding = torch.cat([class_embedding, self.fake_latent.repeat(bsz, 1)], dim=0)
                mask = torch.cat([mask, mask], dim=0)
            enc = self.forward_mae_encoder(tokens, mask, class_embedding)
            z = self.forward_mae_decoder(enc, mask)
            mask_ratio = np.cos(math.pi / 2.0 * (step + 1) / num_iter)
            mask_len = torch.Tensor([np.floor(self.seq_len * mask_ratio)])
            mask_len = torch.maximum(torch.Tensor([1]), torch.minimum(torch.sum(mask, dim=-1, keepdims=True) - 1,
                                                                      mask_len))
            mask_next = mask_by_order(mask_len[0], orders, bsz, self.seq_len)
            if step >= num_iter - 1:
                mask_to_pred = mask[:bsz].bool()
            else:
                mask_to_pred = torch.logical_xor(mask[:bsz].bool(), mask_next.bool())
            mask_in = mask
            mask = mask_next
            if cfg != 1.0:
                mask_to_pred = torch.cat([mask_to_pred, mask_to_pred], dim=0)
            z_pred = z[mask_to_pred.nonzero(as_tuple=True)]
            if cfg_schedule == "linear":
                cfg_iter = 1 + (cfg - 1) * (self.seq_len - mask_len[0]) / self.seq_len
            elif cfg_schedule == "constant":
                cfg_iter = cfg
            else:
                raise NotImplementedError(cfg_schedule)
            sampled = self.diffloss.sample(z_pred, temperature, cfg_iter, randn)
            if cfg != 1.0:
                sampled, _ = sampled.chunk(2, dim=0)
                mask_to_pred, _ = mask_to_pred.chunk(2, dim=0)
            cur_tokens[mask_to_pred.nonzero(as_tuple=True)] = sampled
            if hook is not None:
                hook(step, dict(tokens_in=tokens, mask_in=mask_in, class_embedding=class_embedding, enc_out=enc,
                                dec_out=z, mask_len=mask_len[0], mask_next=mask_next, mask_to_pred=mask_to_pred,
                                z_pred=z_pred, cfg_iter=cfg_iter, sampled=sampled))
            tokens = cur_tokens.clone()
        return self.unpatchify(tokens)


def mask_by_order(mask_len, order, bsz, seq_len):
    masking = torch.zeros(bsz, seq_len)
    return torch.scatter(masking, -1, order[:, : mask_len.long()], torch.ones(bsz, seq_len)).bool()


# --------------------------------------------------------------------------------------------------------------
# Construction from checkpoints (+ the config.json the training script writes)
# --------------------------------------------------------------------------------------------------------------


def _indices(sd, prefix):
    return sorted({int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)})


def vae_from_state(sd, cfg=None):
    """Rebuilds an AutoencoderKL from a state dict (ch, ch_mult, res blocks, attention placement from the keys)."""
    cfg = cfg or {}
    ch = sd["encoder.conv_in.weight"].shape[0]
    levels = _indices(sd, "encoder.down.")
    ch_mult = [sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels]
    nrb = len(_indices(sd, "encoder.down.0.block."))
    embed_dim = sd["post_quant_conv.weight"].shape[0]
    resolution = cfg.get("resolution", 256)
    enc_attn = [resolution // 2 ** i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in sd]
    dec_attn = [resolution // 2 ** i for i in levels if f"decoder.up.{i}.attn.0.q.weight" in sd]
    vae = AutoencoderKL(embed_dim, ch, ch_mult, nrb, enc_attn, resolution, dec_attn)
    vae.load_state_dict(sd, strict=True)
    return vae


def mar_from_state(sd, cfg):
    """cfg: config.json's 'mar' section (heads, buffer_size, patch_size, vae_stride, img_size, ...)."""
    enc = sd["z_proj.weight"].shape[0]
    dec = sd["decoder_embed.weight"].shape[0]
    model = MAR(img_size=cfg["img_size"], vae_stride=cfg["vae_stride"], patch_size=cfg["patch_size"],
                encoder_embed_dim=enc, encoder_depth=len(_indices(sd, "encoder_blocks.")),
                encoder_num_heads=cfg["encoder_num_heads"], decoder_embed_dim=dec,
                decoder_depth=len(_indices(sd, "decoder_blocks.")), decoder_num_heads=cfg["decoder_num_heads"],
                mlp_ratio=sd["encoder_blocks.0.mlp.fc1.weight"].shape[0] / enc,
                vae_embed_dim=sd["z_proj.weight"].shape[1] // cfg["patch_size"] ** 2,
                class_num=sd["class_emb.weight"].shape[0], buffer_size=cfg["buffer_size"],
                diffloss_d=len(_indices(sd, "diffloss.net.res_blocks.")),
                diffloss_w=sd["diffloss.net.input_proj.weight"].shape[0],
                num_sampling_steps=str(cfg.get("num_sampling_steps", "100")))
    model.load_state_dict(sd, strict=True)
    return model
