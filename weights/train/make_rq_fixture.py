"""Writes an RQ fixture directory in rq-tiny's release layout from rq_model.py (our port, which
check_rq_model.py checks against the official goldens), at a configuration rq-tiny does not cover: another
code map and depth, codebook size, widths, and different head counts and depths for the body and the head.
webvar's fixture tests then run on it like on an official fixture:

    /usr/bin/python3 weights/train/make_rq_fixture.py --out testdata/variants/rq-6x6x3
    WEBVAR_FIXTURES=testdata/variants/rq-6x6x3 go test -run Fixture ./core/rq ./core/webgpu

Only what core/rq/rqtest reads is written (stage1/, stage2/, golden.safetensors, golden.md, config.json).
Weights follow rq-tiny's perturbation recipe (config.json there) so that every op moves the outputs and the
greedy decisions keep a margin; the script fails if a top-2 logit gap or a VQ distance gap is too small.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
import yaml
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_mar_fixture import write_safetensors  # noqa: E402
from rq_model import rqtransformer_from_config, rqvae_from_config  # noqa: E402


def perturb_vae(vae, g, z_std):
    with torch.no_grad():
        for name, m in vae.named_modules():
            if isinstance(m, nn.Conv2d):
                gain = 0.6 if name == "decoder.conv_out" else 1.6 if name.endswith((".q", ".k")) else 1.0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain / m.weight[0].numel() ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.05)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.15 * torch.randn(m.bias.shape, generator=g))


def set_codebook(vae, g, z_std):
    cb = vae.quantizer.codebook
    n, C = cb.n_embed, cb.weight.shape[1]
    with torch.no_grad():
        d = torch.randn(n, C, generator=g)
        d = d / d.norm(dim=1, keepdim=True)
        norm = math.sqrt(C) * z_std * torch.exp(torch.empty(n).uniform_(math.log(0.1), math.log(1.2), generator=g))
        cb.weight[:-1] = d * norm[:, None]
        cb.weight[-1] = 0
        cb.embed_ema.copy_(cb.weight[:-1])
        cb.cluster_size_ema.zero_()


def perturb_transformer(tr, g, cb_std):
    with torch.no_grad():
        tr.cond_emb.weight.copy_(torch.randn(tr.cond_emb.weight.shape, generator=g))
        for p in (tr.pos_emb_cond, tr.pos_emb_hw, tr.pos_emb_d):
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        for mlp in (tr.input_mlp, tr.head_mlp):
            cin = mlp.weight.shape[1]
            mlp.weight.copy_(torch.randn(mlp.weight.shape, generator=g) / (math.sqrt(cin) * cb_std))
            mlp.bias.copy_(0.3 * torch.randn(mlp.bias.shape, generator=g))
        C = tr.C
        for name, m in tr.named_modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.Linear) and name not in ("input_mlp", "head_mlp"):
                if name.endswith((".query", ".key")):
                    w, b = 1.8 / math.sqrt(C), 0.1
                elif name.endswith(".mlp.0"):
                    w, b = 1 / math.sqrt(C), 0.3
                elif name.endswith(".mlp.2"):
                    w, b = 1 / math.sqrt(4 * C), 0.1
                elif name.startswith("classifier"):
                    w, b = 5 / math.sqrt(C), 0.5
                else:
                    w, b = 1 / math.sqrt(C), 0.1
                m.weight.copy_(w * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(b * torch.randn(m.bias.shape, generator=g))


def greedy_with_logits(tr, codebook, cond):
    """The official sampler's order (h, w, d), argmax (top_k=1); returns codes (B,H,W,D) and every step's
    logits (B, H*W*D, V). Uncached: the prefix is re-run at every position."""
    B = cond.shape[0]
    HW, D = tr.H * tr.W, tr.D
    codes = torch.zeros(B, HW, D, dtype=torch.long)
    steps, gaps = [], []
    for i in range(HW):
        emb = F.embedding(codes[:, :i], codebook)
        body_out = tr.body_transformer(tr.body_input(emb, cond))[:, -1]
        for d in range(D):
            e = F.embedding(codes[:, i, :d], codebook)
            logits = tr.classifier(tr.head_transformer(tr.head_input(body_out, e))[:, -1])
            top2 = logits.topk(2, -1).values
            gaps.append(float((top2[:, 0] - top2[:, 1]).min()))
            codes[:, i, d] = logits.argmax(-1)
            steps.append(logits)
    return codes.reshape(B, tr.H, tr.W, D), torch.stack(steps, 1), min(gaps)


def vq_min_gap(vae, z):
    """Smallest relative gap between the two nearest codes over every depth's residual."""
    cb = vae.quantizer.codebook.weight[:-1]
    r = z.reshape(-1, z.shape[-1]).clone()
    worst = float("inf")
    for _ in range(vae.quantizer.depth):
        d = (r ** 2).sum(1, keepdim=True) + (cb ** 2).sum(1)[None] - 2 * r @ cb.t()
        two = d.topk(2, 1, largest=False).values
        scale = (r ** 2).sum(1) + (cb ** 2).sum(1).mean()
        worst = min(worst, float(((two[:, 1] - two[:, 0]) / scale).min()))
        r = r - cb[d.argmin(1)]
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", type=int, default=24)
    ap.add_argument("--ch-mult", default="1,2,2", help="RQ-VAE levels; the latent side is image / 2^(levels-1)")
    ap.add_argument("--depth", type=int, default=3, help="code depth D")
    ap.add_argument("--n-embed", type=int, default=96)
    ap.add_argument("--embed-dim", type=int, default=8)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--body", default="3,3", help="body layers,heads")
    ap.add_argument("--head", default="2,4", help="head layers,heads")
    ap.add_argument("--classes", type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(1000 + args.seed)
    ch_mult = [int(v) for v in args.ch_mult.split(",")]
    side = args.image // 2 ** (len(ch_mult) - 1)
    code_shape = [side, side, args.depth]
    body_layers, body_heads = (int(v) for v in args.body.split(","))
    head_layers, head_heads = (int(v) for v in args.head.split(","))
    s1 = {"dataset": {"type": "variant-fixture", "transforms": {"type": f"{args.image}x{args.image}"}},
          "arch": {"type": "rq-vae", "code_hier": 1,
                   "hparams": {"bottleneck_type": "rq", "embed_dim": args.embed_dim, "n_embed": args.n_embed,
                               "latent_shape": [side, side, args.embed_dim], "code_shape": code_shape,
                               "shared_codebook": True, "decay": 0.99, "restart_unused_codes": True,
                               "loss_type": "mse", "latent_loss_weight": 0.25},
                   "ddconfig": {"double_z": False, "z_channels": 32, "resolution": args.image, "in_channels": 3,
                                "out_ch": 3, "ch": 32, "ch_mult": ch_mult, "num_res_blocks": 1,
                                "attn_resolutions": [side], "dropout": 0.0},
                   "checkpointing": True}}
    s2 = {"dataset": {"type": "variant-fixture", "vocab_size": args.n_embed},
          "vqvae": {"ckpt": "../stage1/model.pt"},
          "arch": {"type": "rq-transformer", "vocab_size": args.n_embed, "block_size": code_shape,
                   "embed_dim": args.width, "input_embed_dim": args.embed_dim, "shared_tok_emb": True,
                   "shared_cls_emb": True, "input_emb_vqvae": True, "head_emb_vqvae": True, "cumsum_depth_ctx": True,
                   "vocab_size_cond": args.classes, "block_size_cond": 1,
                   "body": {"n_layer": body_layers, "block": {"n_head": body_heads}},
                   "head": {"n_layer": head_layers, "block": {"n_head": head_heads}}}}
    vae = rqvae_from_config(s1["arch"]).eval()
    tr = rqtransformer_from_config(s2["arch"]).eval()
    perturb_vae(vae, g, 1.0)
    x = torch.sin(torch.linspace(0, 6 * math.pi, 2 * 3 * args.image * args.image)).reshape(2, 3, args.image, args.image)
    x = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        z_std = float(vae.encode(x).std())
    set_codebook(vae, g, z_std)
    cb = vae.quantizer.codebook.weight
    perturb_transformer(tr, g, float(cb[:-1].std()))

    out = {}
    with torch.no_grad():
        out["vae.x"] = x
        out["vae.encoder_out"] = vae.encoder(x)
        z = vae.encode(x)
        out["vae.z_e"] = z
        cums, codes = vae.quantizer.quantize(z)
        out["vae.codes"] = codes
        for d, c in enumerate(cums):
            out[f"vae.quant_cumsum.d{d}"] = c
        out["vae.code_emb_with_depth"] = vae.get_code_emb_with_depth(codes)
        for d in range(args.depth):
            out[f"vae.partial_add.d{d}"] = vae.decode_partial_code(codes, d, "add")
            out[f"vae.partial_select.d{d}"] = vae.decode_partial_code(codes, d, "select")
        out["vae.decode_code"] = vae.decode_code(codes)
        out["vae.forward_out"] = vae(x)[0]
        out["vae.commitment_loss"] = vae.quantizer(z)[1].reshape(1)
        vq_gap = vq_min_gap(vae, z)

        tf_cond = torch.tensor([min(2, args.classes - 1), args.classes - 1])
        tf_codes = torch.randint(0, args.n_embed, (2, side, side, args.depth), generator=g)
        logits, inner = tr(tf_codes, cb, tf_cond, return_inner=True)
        out["tf.codes"], out["tf.cond"] = tf_codes, tf_cond
        for k in ("body_in", "body_out", "head_in", "head_out"):
            out["tf." + k] = inner[k]
        out["tf.logits"] = logits

        ar_cond = torch.tensor([min(1, args.classes - 1), max(args.classes - 2, 0)])
        ar_codes, step_logits, gap = greedy_with_logits(tr, cb, ar_cond)
        out["ar.cond"], out["ar.codes"], out["ar.step_logits"] = ar_cond, ar_codes, step_logits
        img = torch.cat([vae.decode_code(ar_codes[i:i + 1]) for i in range(2)])
        out["ar.img"], out["ar.img01"] = img, (img * 0.5 + 0.5).clamp(0, 1)
        out["ar.tf_logits"] = tr(ar_codes, cb, ar_cond).reshape(2, -1, args.n_embed)
    if gap < 2e-3 or vq_gap < 2e-5:  # fp32 noise: ~1e-4 on logits, ~1e-6 on relative distances
        sys.exit(f"margins too small for exact ids (top-2 logit gap {gap:.2e}, VQ gap {vq_gap:.2e}): try another --seed")

    for stage, cfg, model in (("stage1", s1, vae), ("stage2", s2, tr)):
        os.makedirs(os.path.join(args.out, stage), exist_ok=True)
        with open(os.path.join(args.out, stage, "config.yaml"), "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        torch.save({"state_dict": model.state_dict()}, os.path.join(args.out, stage, "model.pt"))
    write_safetensors(os.path.join(args.out, "golden.safetensors"), out)
    name = os.path.basename(os.path.abspath(args.out))
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump({"name": name, "generated_by": "weights/train/make_rq_fixture.py (webvar's port rq_model.py, not "
                   "the official code)", "image_size": args.image, "code_shape": code_shape,
                   "stage1": s1["arch"], "stage2": s2["arch"],
                   "checks": {"ar_min_top2_gap": gap, "vq_min_rel_gap": vq_gap,
                              "distinct_ar_codes": int(ar_codes.unique().numel())}}, f, indent=2)
    with open(os.path.join(args.out, "golden.md"), "w") as f:
        f.write(f"# {name}: RQ goldens from webvar's port (weights/train/rq_model.py)\n\n"
                "Made by `weights/train/make_rq_fixture.py`; tensor names, layouts and tolerances as in "
                "testdata/rq-tiny/golden.md. Configuration: config.json and stage*/config.yaml.\n")
    print(f"wrote {args.out}: codes {code_shape}, top-2 gap {gap:.3g}, VQ gap {vq_gap:.3g}, "
          f"{int(ar_codes.unique().numel())} distinct codes")


if __name__ == "__main__":
    main()
