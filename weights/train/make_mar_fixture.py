"""Writes a MAR fixture directory in mar-tiny's format from mar_model.py (our port, which check_mar_model.py
checks against the official goldens), at a configuration mar-tiny does not cover: patch size, buffer size,
depths, heads, VAE levels, constant CFG, unconditional runs. webvar's fixture tests then run on it like on an
official fixture:

    /usr/bin/python3 weights/train/make_mar_fixture.py --out testdata/mar-p2
    WEBVAR_FIXTURES=testdata/mar-p2 go test -run Fixture ./core/mar ./core/webgpu

Only what core/mar/martest reads is written (config.json, mar.pth, vae.pth, golden.safetensors, golden.md).
"""

import argparse
import json
import os
import struct

import numpy as np
import torch
from torch import nn

import sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mar_model import MAR, AutoencoderKL, GaussianDiffusion, TimestepEmbedder  # noqa: E402

SCALE = 0.2325


def write_safetensors(path, tensors):
    """8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, raw data."""
    kinds = {torch.float32: ("F32", np.float32), torch.float64: ("F64", np.float64), torch.int64: ("I64", np.int64)}
    hdr, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = torch.as_tensor(tensors[name])
        if t.dtype == torch.bool or t.dtype == torch.int32:
            t = t.long()
        code, npt = kinds[t.dtype]
        b = t.detach().contiguous().numpy().astype(npt).tobytes()
        hdr[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def perturb_mar(mar, g):
    """mar-tiny's recipe: Linear weights N(0, gain/sqrt(fan_in)), biases N(0, .05); LayerNorm 1+N(0,.1)/N(0,.1);
    embeddings N(0,1); position tables N(0,.5). Without it the adaLN-zero head would output zeros."""
    with torch.no_grad():
        for name, m in mar.named_modules():
            if isinstance(m, nn.Linear):
                gain = 1.5 if name.endswith("attn.qkv") else 0.5 if ("adaLN_modulation" in name or
                                                                      name.endswith("final_layer.linear")) else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / m.weight.shape[1] ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for p in (mar.class_emb.weight, mar.fake_latent, mar.mask_token):
            p.copy_(torch.randn(p.shape, generator=g))
        for p in (mar.encoder_pos_embed_learned, mar.decoder_pos_embed_learned, mar.diffusion_pos_embed_learned):
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


def perturb_vae(vae, g):
    with torch.no_grad():
        for name, m in vae.named_modules():
            if isinstance(m, nn.Conv2d):
                fan = m.weight[0].numel()
                gain = 0.55 if name == "decoder.conv_out" else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / fan ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.15 * torch.randn(m.bias.shape, generator=g))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--img-size", type=int, default=16)
    ap.add_argument("--vae-ch-mult", default="1,2", help="VAE levels; the stride is 2^(levels-1)")
    ap.add_argument("--vae-embed", type=int, default=8)
    ap.add_argument("--vae-res-blocks", type=int, default=1)
    ap.add_argument("--patch", type=int, default=2)
    ap.add_argument("--enc", default="48,3,3", help="encoder dim,depth,heads")
    ap.add_argument("--dec", default="32,1,2", help="decoder dim,depth,heads")
    ap.add_argument("--buffer", type=int, default=8)
    ap.add_argument("--diff", default="3,48", help="diffusion head depth,width")
    ap.add_argument("--steps", type=int, default=7, help="respaced diffusion steps")
    ap.add_argument("--classes", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    ch_mult = [int(v) for v in args.vae_ch_mult.split(",")]
    stride = 2 ** (len(ch_mult) - 1)
    enc_dim, enc_depth, enc_heads = (int(v) for v in args.enc.split(","))
    dec_dim, dec_depth, dec_heads = (int(v) for v in args.dec.split(","))
    diff_d, diff_w = (int(v) for v in args.diff.split(","))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    g = torch.Generator().manual_seed(1000 + args.seed)
    vae = AutoencoderKL(args.vae_embed, 32, ch_mult, args.vae_res_blocks).eval()
    mar = MAR(img_size=args.img_size, vae_stride=stride, patch_size=args.patch, encoder_embed_dim=enc_dim,
              encoder_depth=enc_depth, encoder_num_heads=enc_heads, decoder_embed_dim=dec_dim,
              decoder_depth=dec_depth, decoder_num_heads=dec_heads, vae_embed_dim=args.vae_embed,
              class_num=args.classes, buffer_size=args.buffer, diffloss_d=diff_d, diffloss_w=diff_w,
              num_sampling_steps=str(args.steps)).eval()
    perturb_mar(mar, g)
    perturb_vae(vae, g)
    torch.save(mar.state_dict(), os.path.join(args.out, "mar.pth"))
    torch.save({"model": vae.state_dict()}, os.path.join(args.out, "vae.pth"))

    L, Ct = mar.seq_len, mar.token_embed_dim
    runs = [
        dict(name="ar0", B=2, labels=[1, args.classes - 1], num_iter=5, cfg=3.0, cfg_schedule="constant",
             temperature=0.8, seed=10, detailed=True),
        dict(name="ar1", B=1, labels=None, num_iter=3, cfg=1.0, cfg_schedule="linear", temperature=1.0, seed=11,
             detailed=False),
        dict(name="ar2", B=2, labels=[0, 2], num_iter=L, cfg=2.0, cfg_schedule="linear", temperature=1.1,
             seed=12, detailed=False),
    ]
    out = {}
    gd, bd = mar.diffloss.gen_diffusion, GaussianDiffusion("")
    out["diff.timestep_map"] = torch.from_numpy(np.asarray(gd.timestep_map)).long()
    for k in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_recip_alphas_cumprod",
              "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
              "posterior_mean_coef1", "posterior_mean_coef2", "log_betas"):
        out[f"diff.{k}"] = torch.from_numpy(np.asarray(getattr(gd, k), dtype=np.float64))
    out["diff.base_betas"] = torch.from_numpy(np.asarray(bd.betas, dtype=np.float64))

    g2 = torch.Generator().manual_seed(2000 + args.seed)
    with torch.no_grad():
        net = mar.diffloss.net
        t = torch.tensor([0, 1, 250, 500, 998, 999])
        out["temb.t"] = t
        out["temb.freq"] = TimestepEmbedder.timestep_embedding(t, 256)
        out["temb.out"] = net.time_embed(t)
        out["tf.x"] = torch.randn(6, Ct, generator=g2)
        out["tf.t"] = torch.tensor([999, 5, 300, 999, 5, 300])
        out["tf.c"] = torch.randn(6, dec_dim, generator=g2)
        out["tf.net_out"] = net(out["tf.x"], out["tf.t"], out["tf.c"])
        out["tf.net_out_cfg"] = net.forward_with_cfg(out["tf.x"], out["tf.t"], out["tf.c"], 2.0)
        x = (torch.rand(1, 3, args.img_size, args.img_size, generator=g2) * 2 - 1)
        out["vae.x"] = x
        out["vae.moments"] = vae.encode(x)
        mean, _ = vae.split_moments(out["vae.moments"])
        out["vae.decode_mean"] = vae.decode(mean)
        out["vae.mar_latent_of_mean"] = mar.patchify(mean * SCALE)

        for run in runs:
            r = run["name"]
            np.random.seed(run["seed"])
            torch.manual_seed(run["seed"])
            orders = mar.sample_orders(run["B"])
            draws = []

            def randn(shape, draws=draws):
                d = torch.randn(shape)
                draws.append(d)
                return d.clone()

            seen = {}

            def hook(step, d, seen=seen):
                seen[step] = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in d.items()}

            traces = []
            orig = mar.diffloss.gen_diffusion.p_sample_loop
            if run["detailed"]:
                def traced(fn, noise, temperature=1.0, rnd=None, trace=None, orig=orig):
                    tr = []
                    x = orig(fn, noise, temperature, rnd, tr)
                    traces.append(tr)
                    return x
                mar.diffloss.gen_diffusion.p_sample_loop = traced
            labels = torch.tensor(run["labels"]) if run["labels"] is not None else None
            tokens = mar.sample_tokens(run["B"], run["num_iter"], run["cfg"], run["cfg_schedule"], labels,
                                       run["temperature"], orders=orders, randn=randn, hook=hook)
            mar.diffloss.gen_diffusion.p_sample_loop = orig
            if labels is not None:
                out[f"{r}.labels"] = labels
            out[f"{r}.orders"] = orders
            out[f"{r}.tokens_seq"] = mar.patchify(tokens)
            out[f"{r}.tokens"] = tokens
            out[f"{r}.img"] = vae.decode(tokens / SCALE)
            per_iter = 1 + gd.num_timesteps
            assert len(draws) == run["num_iter"] * per_iter, (len(draws), run["num_iter"], per_iter)
            for it in range(run["num_iter"]):
                p, d = f"{r}.it{it}.", seen[it]
                ds = draws[it * per_iter:(it + 1) * per_iter]
                out[p + "noise_init"] = ds[0]
                out[p + "noise_steps"] = torch.stack(ds[1:])
                out[p + "mask_len"] = torch.as_tensor(d["mask_len"]).float().reshape(1)
                out[p + "mask_to_pred"] = d["mask_to_pred"][:run["B"]].long()
                out[p + "cfg_iter"] = torch.as_tensor(d["cfg_iter"]).float().reshape(1)
                out[p + "sampled"] = d["sampled"]
                out[p + "enc_out"] = d["enc_out"]
                out[p + "dec_out"] = d["dec_out"]
                out[p + "z_pred"] = d["z_pred"]
            tm = torch.from_numpy(np.asarray(gd.timestep_map))
            for it, tr in enumerate(traces):  # detailed runs: every diffusion step of every iteration
                p = f"{r}.it{it}.d."
                for key in ("mean", "log_variance", "pred_xstart", "sample"):
                    out[p + key] = torch.stack([s[key] for s in tr])
                # net_out: the network's own output, before CFG mixes the eps halves
                raw = []
                for i, s in enumerate(tr):
                    k = gd.num_timesteps - 1 - i
                    x_in = s["x_t"]
                    if run["cfg"] != 1.0:
                        half = x_in[: x_in.shape[0] // 2]
                        x_in = torch.cat([half, half])
                    raw.append(net(x_in, tm[torch.full((x_in.shape[0],), k)], seen[it]["z_pred"]))
                out[p + "net_out"] = torch.stack(raw)

    write_safetensors(os.path.join(args.out, "golden.safetensors"), out)
    cfg = {
        "fixture": os.path.basename(os.path.abspath(args.out)),
        "generated_by": "weights/train/make_mar_fixture.py (webvar's port mar_model.py, not the official code)",
        "image_size": args.img_size,
        "vae": dict(embed_dim=args.vae_embed, ch=32, ch_mult=ch_mult, num_res_blocks=args.vae_res_blocks,
                    downsample=stride, scale_factor=SCALE),
        "mar": dict(img_size=args.img_size, vae_stride=stride, patch_size=args.patch, encoder_embed_dim=enc_dim,
                    encoder_depth=enc_depth, encoder_num_heads=enc_heads, decoder_embed_dim=dec_dim,
                    decoder_depth=dec_depth, decoder_num_heads=dec_heads, vae_embed_dim=args.vae_embed,
                    class_num=args.classes, buffer_size=args.buffer, diffloss_d=diff_d, diffloss_w=diff_w,
                    num_sampling_steps=str(args.steps), seq_len=L, token_embed_dim=Ct),
        "ar": runs,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "golden.md"), "w") as f:
        f.write(f"# {cfg['fixture']}: MAR goldens from webvar's port (weights/train/mar_model.py)\n\n"
                "Made by `weights/train/make_mar_fixture.py`; tensor names, layouts and tolerances as in "
                "testdata/mar-tiny/golden.md. Configuration: config.json.\n")
    print(f"wrote {args.out}: seq_len {L}, token dim {Ct}, {len(out)} golden tensors")


if __name__ == "__main__":
    main()
