"""Writes a VAR fixture directory in var-tiny's format from var.py and vqvae.py (our ports; fashionvar was
trained with them and webvar reproduces var-tiny), at a configuration var-tiny does not cover: shared AdaLN,
plain (not l2-norm) attention with head_dim 24, one Phi per scale or one shared Phi, a non-official
schedule of scales and a 3-level VQVAE. webvar's fixture tests then run on it like on an official fixture:

    /usr/bin/python3 weights/train/make_var_fixture.py --out testdata/variants/var-shared-plain
    WEBVAR_FIXTURES=testdata/variants/var-shared-plain go test -run Fixture ./core/varmodel ./core/webgpu

Only what core/varmodel/vartest reads is written (config.json, var.pth, vae.pth, golden.safetensors,
golden.md). Weights follow var-tiny's perturbation recipe; the script fails when a greedy decision's top-2
logit gap or a nearest-code distance gap is too small for exact ids in float32.
"""

import argparse
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_mar_fixture import write_safetensors  # noqa: E402
from var import VAR  # noqa: E402
from vqvae import VQVAE  # noqa: E402


def perturb_vae(vae, g):
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.15 * torch.randn(m.bias.shape, generator=g))


def perturb_var(var, g, l2):
    C = var.c
    n = lambda shape, std: std * torch.randn(shape, generator=g)  # noqa: E731
    with torch.no_grad():
        for p in var.parameters():
            p.add_(n(p.shape, 0.03))
        var.class_emb.weight.copy_(n(var.class_emb.weight.shape, 1.0))
        for p in (var.pos_start, var.pos_1LC, var.lvl_embed.weight):
            p.copy_(n(p.shape, 0.3))
        var.word_embed.weight.copy_(n(var.word_embed.weight.shape, 1 / math.sqrt(var.word_embed.weight.shape[1])))

        def ada(lin):
            lin.weight.copy_(n(lin.weight.shape, 0.08))
            lin.bias.copy_(torch.cat([n((C,), 0.25) + (0.7 if i < 2 else 0.0) for i in range(6)]))
        if var.shared_ada_lin is not None:
            ada(var.shared_ada_lin[-1])
        for b in var.blocks:
            a = b.attn
            a.mat_qkv.weight.copy_(n(a.mat_qkv.weight.shape, (1.0 if l2 else 2.5) / math.sqrt(C)))
            a.q_bias.copy_(n(a.q_bias.shape, 0.3))
            a.v_bias.copy_(n(a.v_bias.shape, 0.3))
            if l2:
                a.scale_mul_1H11.copy_(torch.empty(a.scale_mul_1H11.shape).uniform_(6, 30, generator=g).log())
            for lin in (a.proj, b.ffn.fc1, b.ffn.fc2):
                lin.weight.copy_(n(lin.weight.shape, 1 / math.sqrt(lin.weight.shape[1])))
            if b.shared_aln:
                b.ada_gss.copy_(n(b.ada_gss.shape, 0.25))
            else:
                ada(b.ada_lin[-1])
        hl = var.head_nm.ada_lin[-1]
        hl.weight.copy_(n(hl.weight.shape, 0.08))
        hl.bias.copy_(n(hl.bias.shape, 0.25))
        var.head.weight.copy_(n(var.head.weight.shape, 4.5 / math.sqrt(C)))
        var.head.bias.copy_(n(var.head.bias.shape, 1.0))


def vq_min_gap(vae, f):
    """Smallest relative gap between the two nearest codes over every scale's residual (the f_to_ids walk)."""
    q = vae.quantize
    B, C, H, W = f.shape
    e = q.embedding.weight
    rest, worst = f.clone(), float("inf")
    for si, pn in enumerate(q.patch_nums):
        last = si == len(q.patch_nums) - 1
        r = rest if last else F.interpolate(rest, size=(pn, pn), mode="area")
        z = r.permute(0, 2, 3, 1).reshape(-1, C)
        d = z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * z @ e.t()
        two = d.topk(2, 1, largest=False).values
        worst = min(worst, float(((two[:, 1] - two[:, 0]) / (z.pow(2).sum(1) + e.pow(2).sum(1).mean())).min()))
        h = q.embedding(d.argmin(1)).view(B, pn, pn, C).permute(0, 3, 1, 2)
        if not last:
            h = F.interpolate(h, size=(H, W), mode="bicubic", align_corners=False)
        rest = rest - q.phi(si)(h)
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", type=int, default=24)
    ap.add_argument("--ch-mult", default="1,2,2")
    ap.add_argument("--patch-nums", default="1,2,3,5,6")
    ap.add_argument("--vocab", type=int, default=80)
    ap.add_argument("--cvae", type=int, default=8)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--share-quant-resi", type=int, default=0, help="0: a Phi per scale, 1: one, 4: four")
    ap.add_argument("--l2-attn", action="store_true", help="l2-norm attention (default: plain)")
    ap.add_argument("--own-adaln", action="store_true", help="per-block ada_lin (default: shared AdaLN)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(1000 + args.seed)
    ch_mult = [int(v) for v in args.ch_mult.split(",")]
    pn = tuple(int(v) for v in args.patch_nums.split(","))
    l2, shared = args.l2_attn, not args.own_adaln

    vae = VQVAE(args.vocab, args.cvae, 32, ch_mult, 2, pn, args.share_quant_resi).eval()
    var = VAR(args.vocab, args.cvae, args.classes, args.depth, args.width, args.heads, pn, 0.0,
              attn_l2_norm=l2, shared_aln=shared).eval()
    perturb_vae(vae, g)
    perturb_var(var, g, l2)
    x = torch.cos(torch.linspace(0, 7 * math.pi, 2 * 3 * args.image ** 2)).reshape(2, 3, args.image, args.image)
    x = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    out = {}
    with torch.no_grad():
        f = vae.encode_f(x)
        vae.quantize.embedding.weight.copy_(torch.randn(vae.quantize.embedding.weight.shape, generator=g) * float(f.std()))
        out["vae.x"], out["vae.f"] = x, f
        ids = vae.img_to_ids(x)
        for si, i in enumerate(ids):
            out[f"vae.idx.s{si}"] = i
        xt = vae.quantize.next_inputs(ids)
        out["tf.x_BLCv_wo_first_l"] = xt
        out["vae.recon"] = vae.fhat_to_img(vae.quantize.ids_to_fhat(ids))
        vq_gap = vq_min_gap(vae, f)

        labels = torch.tensor([3, args.classes - 1])
        out["tf.label_B"] = labels
        taps = {}
        hooks = []
        for k, b in enumerate(var.blocks):
            hooks.append(b.register_forward_hook(lambda m, i, o, k=k: taps.__setitem__(f"tf.block{k}.out", o)))
            hooks.append(b.attn.register_forward_hook(lambda m, i, o, k=k: taps.__setitem__(f"tf.block{k}.attn_out", o)))
            hooks.append(b.ffn.register_forward_hook(lambda m, i, o, k=k: taps.__setitem__(f"tf.block{k}.ffn_out", o)))
        hooks.append(var.blocks[0].register_forward_hook(
            lambda m, i, o: taps.update({"tf.x_in": i[0], "tf.cond_BD_or_gss": i[1]})))
        hooks.append(var.head_nm.register_forward_hook(lambda m, i, o: taps.__setitem__("tf.head_nm_out", o)))
        out["tf.logits"] = var(labels, xt)
        for h in hooks:
            h.remove()
        out.update(taps)

        gap = float("inf")
        runs = [("ar0", [1, 4], 0.0), ("ar1", [0, args.classes - 2], 1.5), ("ar2", [2, 5], 4.0)]
        for name, lab, cfg in runs:
            run_ids, run_gap = var.generate(vae, torch.tensor(lab), cfg=cfg, top_k=1, return_gaps=True)
            gap = min(gap, run_gap)
            out[f"{name}.label_B"], out[f"{name}.cfg"] = torch.tensor(lab), torch.tensor(float(cfg))
            for si, i in enumerate(run_ids):
                out[f"{name}.idx.s{si}"] = i
            out[f"{name}.img"] = (vae.fhat_to_img(vae.quantize.ids_to_fhat(run_ids)) + 1) / 2
    if gap < 2e-3 or vq_gap < 2e-5:  # float32 noise: ~1e-4 on logits, ~1e-6 on relative distances
        sys.exit(f"margins too small for exact ids (top-2 logit gap {gap:.2e}, VQ gap {vq_gap:.2e}): try another --seed")

    os.makedirs(args.out, exist_ok=True)
    torch.save(var.state_dict(), os.path.join(args.out, "var.pth"))
    torch.save(vae.state_dict(), os.path.join(args.out, "vae.pth"))
    write_safetensors(os.path.join(args.out, "golden.safetensors"), out)
    name = os.path.basename(os.path.abspath(args.out))
    cfg = {"fixture": name, "generated_by": "weights/train/make_var_fixture.py (webvar's ports var.py and vqvae.py, "
           "not the official code)", "image_size": args.image,
           "vae": {"V": args.vocab, "Cvae": args.cvae, "ch": 32, "ch_mult": ch_mult, "num_res_blocks": 2,
                   "share_quant_resi": args.share_quant_resi, "v_patch_nums": list(pn)},
           "var": {"depth": args.depth, "embed_dim": args.width, "num_heads": args.heads,
                   "head_dim": args.width // args.heads, "shared_aln": shared, "attn_l2_norm": l2,
                   "num_classes": args.classes, "patch_nums": list(pn)},
           "ar": [{"name": n, "B": 2, "labels": lab, "cfg": c, "top_k": 1} for n, lab, c in runs],
           "checks": {"min_top2_gap_of_cfg_logits": gap, "vq_min_rel_gap": vq_gap}}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "golden.md"), "w") as f:
        f.write(f"# {name}: VAR goldens from webvar's ports (weights/train/var.py, vqvae.py)\n\n"
                "Made by `weights/train/make_var_fixture.py`; tensor names, layouts and tolerances as in "
                "testdata/var-tiny/golden.md. Configuration: config.json.\n")
    print(f"wrote {args.out}: patch_nums {list(pn)}, shared AdaLN {shared}, l2 attention {l2}, "
          f"share_quant_resi {args.share_quant_resi}, top-2 gap {gap:.3g}, VQ gap {vq_gap:.3g}")


if __name__ == "__main__":
    main()
