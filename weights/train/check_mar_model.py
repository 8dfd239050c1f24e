"""Checks mar_model.py against the official MAR's golden tensors (shared/fixtures/mar-tiny):

    /usr/bin/python3 weights/train/check_mar_model.py [--fixture /work/shared/fixtures/mar-tiny]

Builds AutoencoderKL and MAR at mar-tiny's config, loads vae.pth and mar.pth with strict=True (so the key layout
is the official one), then compares, printing "OK"/"FAIL" with the max error relative to the golden tensor's max
|value| (integers and masks must match exactly):
  diff.*            the respaced (10-step) and base (1000-step) diffusion tables
  temb.*            the sinusoidal timestep embedding and the time MLP
  tf.net_out(_cfg)  SimpleMLPAdaLN (and forward_with_cfg) on teacher-forced x, t, c
  vae.*             moments = quant_conv(encoder(x)); decode(mean); patchify(mean * 0.2325)
  arK.itI.*         forward_mae_encoder / forward_mae_decoder on each recorded iteration's inputs
  arK (replay)      full sample_tokens runs with the recorded orders and Gaussian draws: every iteration's masks,
                    mask_len, cfg_iter, z_pred, sampled tokens, the final tokens_seq, tokens and image
  ar1.it0.d.*       per diffusion step (x_t, network output, mean, log-variance, x0, sample) of one iteration
Exit status 1 if anything fails.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mar_model import MAR, AutoencoderKL, GaussianDiffusion, TimestepEmbedder  # noqa: E402

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def read_safetensors(path):
    """8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, raw data."""
    with open(path, "rb") as f:
        buf = f.read()
    n, = struct.unpack("<Q", buf[:8])
    hdr = json.loads(buf[8:8 + n])
    base = 8 + n
    out = {}
    for name, d in hdr.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        arr = np.frombuffer(buf[base + a: base + b], dtype=DTYPES[d["dtype"]]).reshape(d["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Checker:
    def __init__(self, tol):
        self.tol, self.fails, self.n, self.worst = tol, [], 0, {}

    def close(self, name, got, want, tol=None):
        tol = self.tol if tol is None else tol
        got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
        self.n += 1
        if got.shape != want.shape:
            self.fails.append(name)
            print(f"FAIL {name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
            return
        scale = want.abs().max().clamp_min(1e-30)
        rel = float((got - want).abs().max() / scale)
        ok = rel <= tol and torch.isfinite(got).all()
        parts = name.split(".")  # ar1.it2.enc_out -> ar*.enc_out; ar1.it0.d.mean(replay) -> ar*.d.mean(replay)
        group = "ar*." + ".".join(q for q in parts[1:] if not q.startswith("it")) if parts[0].startswith("ar") else name
        self.worst[group] = max(self.worst.get(group, 0.0), rel)
        if not ok:
            self.fails.append(name)
        print(f"{'OK  ' if ok else 'FAIL'} {name:32s} max|diff|/max|want| = {rel:.2e}  (max|want| {float(scale):.3g})")

    def exact(self, name, got, want):
        got, want = torch.as_tensor(got), torch.as_tensor(want)
        self.n += 1
        ok = got.shape == want.shape and bool((got.double() == want.double()).all())
        if not ok:
            self.fails.append(name)
        print(f"{'OK  ' if ok else 'FAIL'} {name:32s} exact")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default="/work/shared/fixtures/mar-tiny")
    ap.add_argument("--tol", type=float, default=1e-4, help="relative to max |golden| (activations)")
    ap.add_argument("--replay-tol", type=float, default=1e-3, help="relative, for full sampling replays")
    args = ap.parse_args()
    torch.set_num_threads(1)
    fx = args.fixture
    cfg = json.load(open(os.path.join(fx, "config.json")))
    g = read_safetensors(os.path.join(fx, "golden.safetensors"))
    ck = Checker(args.tol)

    vc, mc = cfg["vae"], cfg["mar"]
    vae = AutoencoderKL(vc["embed_dim"], vc["ch"], vc["ch_mult"], vc["num_res_blocks"], vc["encoder_attn_resolutions"],
                        vc["encoder_resolution_param"], vc["decoder_attn_resolutions"]).eval()
    vae.load_state_dict(torch.load(os.path.join(fx, "vae.pth"), map_location="cpu"), strict=True)
    mar = MAR(img_size=mc["img_size"], vae_stride=mc["vae_stride"], patch_size=mc["patch_size"],
              encoder_embed_dim=mc["encoder_embed_dim"], encoder_depth=mc["encoder_depth"],
              encoder_num_heads=mc["encoder_num_heads"], decoder_embed_dim=mc["decoder_embed_dim"],
              decoder_depth=mc["decoder_depth"], decoder_num_heads=mc["decoder_num_heads"], mlp_ratio=mc["mlp_ratio"],
              vae_embed_dim=mc["vae_embed_dim"], mask_ratio_min=mc["mask_ratio_min"],
              label_drop_prob=mc["label_drop_prob"], class_num=mc["class_num"], buffer_size=mc["buffer_size"],
              diffloss_d=mc["diffloss_d"], diffloss_w=mc["diffloss_w"],
              num_sampling_steps=mc["num_sampling_steps"], diffusion_batch_mul=mc["diffusion_batch_mul"]).eval()
    mar.load_state_dict(torch.load(os.path.join(fx, "mar.pth"), map_location="cpu"), strict=True)
    print(f"loaded vae.pth ({len(vae.state_dict())} tensors) and mar.pth ({len(mar.state_dict())} tensors) strict")
    scale = vc["scale_factor"]

    # diffusion tables
    gd, bd = mar.diffloss.gen_diffusion, GaussianDiffusion("")
    ck.exact("diff.timestep_map", torch.from_numpy(gd.timestep_map), g["diff.timestep_map"])
    for k in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_recip_alphas_cumprod",
              "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
              "posterior_mean_coef1", "posterior_mean_coef2", "log_betas"):
        ck.close(f"diff.{k}", torch.from_numpy(getattr(gd, k)), g[f"diff.{k}"], 1e-12)
    ck.close("diff.base_betas", torch.from_numpy(bd.betas), g["diff.base_betas"], 1e-12)
    ck.close("diff.base_alphas_cumprod", torch.from_numpy(bd.alphas_cumprod), g["diff.base_alphas_cumprod"], 1e-12)

    with torch.no_grad():
        net = mar.diffloss.net
        ck.close("temb.freq", TimestepEmbedder.timestep_embedding(g["temb.t"], 256), g["temb.freq"], 1e-5)
        ck.close("temb.out", net.time_embed(g["temb.t"]), g["temb.out"])
        ck.close("tf.net_out", net(g["tf.x"], g["tf.t"], g["tf.c"]), g["tf.net_out"])
        ck.close("tf.net_out_cfg", net.forward_with_cfg(g["tf.x"], g["tf.t"], g["tf.c"], 2.0), g["tf.net_out_cfg"])

        moments = vae.encode(g["vae.x"])
        ck.close("vae.moments", moments, g["vae.moments"])
        mean, _ = vae.split_moments(g["vae.moments"])
        ck.close("vae.decode_mean", vae.decode(mean), g["vae.decode_mean"])
        ck.close("vae.mar_latent_of_mean", mar.patchify(mean * scale), g["vae.mar_latent_of_mean"])

        # per-iteration teacher-forced encoder / decoder
        for run in cfg["ar"]:
            r = run["name"]
            for it in range(run["num_iter"]):
                p = f"{r}.it{it}."
                enc = mar.forward_mae_encoder(g[p + "tokens_in"], g[p + "mask_in"].float(), g[p + "class_embedding"])
                ck.close(p + "enc_out", enc, g[p + "enc_out"])
                dec = mar.forward_mae_decoder(g[p + "enc_out"], g[p + "mask_in"].float())
                ck.close(p + "dec_out", dec, g[p + "dec_out"])

        # full replays: recorded orders and Gaussian draws
        for run in cfg["ar"]:
            r = run["name"]
            draws = []
            for it in range(run["num_iter"]):
                draws.append(g[f"{r}.it{it}.noise_init"])
                draws.extend(g[f"{r}.it{it}.noise_steps"].unbind(0))
            queue = list(draws)

            def randn(shape, queue=queue):
                t = queue.pop(0)
                assert tuple(t.shape) == tuple(shape), f"draw shape {tuple(t.shape)} != requested {tuple(shape)}"
                return t.clone()

            seen = {}

            def hook(step, d, seen=seen):
                seen[step] = d

            traces = []
            if run["detailed"]:  # capture the diffusion steps of iteration 0
                orig = mar.diffloss.gen_diffusion.p_sample_loop

                def traced(fn, noise, temperature=1.0, rnd=None, trace=None, orig=orig):
                    tr = [] if not traces else None
                    x = orig(fn, noise, temperature, rnd, tr)
                    if tr is not None:
                        traces.append(tr)
                    return x
                mar.diffloss.gen_diffusion.p_sample_loop = traced
            labels = g[f"{r}.labels"] if f"{r}.labels" in g else None
            tokens = mar.sample_tokens(run["B"], run["num_iter"], run["cfg"], run["cfg_schedule"], labels,
                                       run["temperature"], orders=g[f"{r}.orders"], randn=randn, hook=hook)
            if run["detailed"]:
                mar.diffloss.gen_diffusion.p_sample_loop = orig
            assert not queue, f"{len(queue)} recorded draws unused"
            for it in range(run["num_iter"]):
                p, d = f"{r}.it{it}.", seen[it]
                ck.exact(p + "mask_len", d["mask_len"].reshape(1), g[p + "mask_len"])
                ck.exact(p + "mask_next", d["mask_next"].long(), g[p + "mask_next"])
                ck.exact(p + "mask_to_pred", d["mask_to_pred"].long(), g[p + "mask_to_pred"])
                ck.close(p + "cfg_iter", torch.as_tensor(d["cfg_iter"]).reshape(1), g[p + "cfg_iter"], 1e-7)
                ck.close(p + "z_pred(replay)", d["z_pred"], g[p + "z_pred"], args.replay_tol)
                ck.close(p + "sampled(replay)", d["sampled"], g[p + "sampled"][: d["sampled"].shape[0]], args.replay_tol)
            tokens_seq = mar.patchify(tokens)
            ck.close(f"{r}.tokens_seq(replay)", tokens_seq, g[f"{r}.tokens_seq"], args.replay_tol)
            ck.close(f"{r}.tokens(replay)", tokens, g[f"{r}.tokens"], args.replay_tol)
            ck.close(f"{r}.img(replay)", vae.decode(tokens / scale), g[f"{r}.img"], args.replay_tol)
            if traces:
                tr = traces[0]
                for key, gk in (("x_t", "x_t"), ("model_out", "model_out"), ("mean", "mean"),
                                ("log_variance", "log_variance"), ("pred_xstart", "pred_xstart"), ("sample", "sample")):
                    got = torch.stack([s[key] for s in tr])
                    ck.close(f"{r}.it0.d.{gk}(replay)", got, g[f"{r}.it0.d.{gk}"], args.replay_tol)

    print()
    print("worst relative error per group: " + ", ".join(f"{k} {v:.1e}" for k, v in sorted(ck.worst.items())))
    if ck.fails:
        print(f"FAILED {len(ck.fails)} of {ck.n} checks: {ck.fails}")
        sys.exit(1)
    print(f"all {ck.n} checks passed")


if __name__ == "__main__":
    main()
