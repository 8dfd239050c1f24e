"""Writes a FlexVAR fixture directory in flexvar-tiny's format from flexvar_model.py (our port), at a
configuration flexvar-tiny does not cover: shared AdaLN, plain (not l2-norm) attention with a head size other
than 64, another MLP ratio, another tokenizer depth and codebook, schedules that are not prefixes of the
trained one (steps above the latent size, sides outside the sampled list), both CFG modes and max_pn.
webvar's fixture tests then run on it like on an official fixture:

    /usr/bin/python3 weights/train/make_flexvar_fixture.py --out testdata/variants/flexvar-shared-plain
    WEBVAR_FIXTURES=testdata/variants/flexvar-shared-plain go test -run Fixture ./core/flexvar ./core/webgpu

Only what core/flexvar/flexvartest reads is written (config.json, var.pth, vae.pth, golden.safetensors,
golden.md). Weights follow flexvar-tiny's perturbation recipe; the script fails when a greedy decision's
top-2 logit gap or a VQ distance gap is too small for exact ids in float32.
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
from flexvar_model import FlexVAR, VQModel  # noqa: E402
from make_mar_fixture import write_safetensors  # noqa: E402


def perturb_vae(vae, g):
    with torch.no_grad():
        for m in vae.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.15 * torch.randn(m.bias.shape, generator=g))
        w = vae.quantize.embedding.weight
        w.copy_(torch.randn(w.shape, generator=g))


def perturb_var(var, g, l2):
    C = var.C
    n = lambda shape, std: std * torch.randn(shape, generator=g)  # noqa: E731
    with torch.no_grad():
        for p in var.parameters():
            p.add_(n(p.shape, 0.03))
        var.class_emb.weight.copy_(n(var.class_emb.weight.shape, 1.0))
        var.pos_start.copy_(n(var.pos_start.shape, 1.0))
        var.pos_1LC.add_(n(var.pos_1LC.shape, 0.5))
        var.word_embed.weight.copy_(n(var.word_embed.weight.shape, 2.0))

        def ada(lin, chunks):
            lin.weight.copy_(n(lin.weight.shape, 0.04))
            b = torch.cat([n((C,), 0.25) + 0.7 if i < chunks - 4 else n((C,), 0.1) for i in range(chunks)])
            lin.bias.copy_(b)
        if var.shared_ada_lin is not None:
            ada(var.shared_ada_lin[-1], 6)
        for b in var.blocks:
            a = b.attn
            a.mat_qkv.weight.copy_(n(a.mat_qkv.weight.shape, (1.0 if l2 else 2.5) / math.sqrt(C)))
            a.q_bias.copy_(n(a.q_bias.shape, 0.3))
            a.v_bias.copy_(n(a.v_bias.shape, 0.1))
            if l2:
                a.scale_mul_1H11.copy_(torch.empty(a.scale_mul_1H11.shape).uniform_(6, 30, generator=g).log())
            for lin in (a.proj, b.ffn.fc1, b.ffn.fc2):
                lin.weight.copy_(n(lin.weight.shape, 1 / math.sqrt(lin.weight.shape[1])))
            if b.shared_aln:
                b.ada_gss.copy_(n(b.ada_gss.shape, 0.25))
            else:
                ada(b.ada_lin[-1], 6)
        head_ada = var.head_nm.ada_lin[-1]
        head_ada.weight.copy_(n(head_ada.weight.shape, 0.04))
        head_ada.bias.copy_(n(head_ada.bias.shape, 0.1))
        var.head.weight.copy_(n(var.head.weight.shape, 6 / math.sqrt(C)))
        var.head.bias.copy_(n(var.head.bias.shape, 0.1))


def teacher_input(vae, ids, sides):
    """x_BLCv_wo_first_l: per scale k < K-1, bicubic(normalised code of scale k, pn_{k+1}) flattened."""
    xs = []
    for k in range(len(sides) - 1):
        code = vae.quantize.lookup(ids[k], sides[k])
        q = sides[k + 1]
        xs.append(F.interpolate(code, size=(q, q), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2))
    return torch.cat(xs, 1)


def vq_min_gap(vae, h, sides):
    e = vae.quantize.codebook()
    worst = float("inf")
    for p in sides:
        z = F.normalize(F.interpolate(h, size=(p, p), mode="area").permute(0, 2, 3, 1).reshape(-1, h.shape[1]), dim=-1)
        d = 2 - 2 * z @ e.t()
        two = d.topk(2, 1, largest=False).values
        worst = min(worst, float((two[:, 1] - two[:, 0]).min()))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image", type=int, default=24)
    ap.add_argument("--ch-mult", default="1,2,2")
    ap.add_argument("--vocab", type=int, default=96)
    ap.add_argument("--cvae", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=3.0)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--l2-attn", action="store_true", help="l2-norm attention (default: plain)")
    ap.add_argument("--own-adaln", action="store_true", help="per-block ada_lin (default: shared AdaLN)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(1000 + args.seed)
    ch_mult = [int(v) for v in args.ch_mult.split(",")]
    P = args.image // 2 ** (len(ch_mult) - 1)
    train_sides = tuple(s for s in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16) if s < P) + (P,)
    l2, shared = args.l2_attn, not args.own_adaln

    vae = VQModel(args.vocab, args.cvae, 32, 32, ch_mult, 1).eval()
    var = FlexVAR(args.vocab, args.cvae, args.classes, args.depth, args.width, args.heads, args.mlp_ratio,
                  train_sides, 0.0, attn_l2_norm=l2, shared_aln=shared).eval()
    perturb_vae(vae, g)
    perturb_var(var, g, l2)

    out = {}
    tf_sides = train_sides
    runs = [  # name, labels, schedule, cfg, max_pn, llamagen
        ("ar0", [1, args.classes - 1], (1, 3, P), 2.0, 16, False),
        ("ar1", [0, 4], (1, 2, 3, 5, P + 1, P + 3), 3.0, 16, True),
        ("ar2", [2, 5], (1, 2, 4, 5, 7), 1.5, 3, False),
    ]
    with torch.no_grad():
        x = torch.sin(torch.linspace(0, 5 * math.pi, 2 * 3 * args.image ** 2)).reshape(2, 3, args.image, args.image)
        x = (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
        out["vae.x"] = x
        h = vae.encode_conti(x)
        out["vae.h"] = h
        ids = vae.img_to_ids(x, tf_sides)
        for k, i in enumerate(ids):
            out[f"vae.idx.s{k}"] = i
        xt = teacher_input(vae, ids, tf_sides)
        out["tf.x_BLCv_wo_first_l"] = xt
        out["vae.recon"] = vae.decode_code(ids[-1], tf_sides[-1])
        for pn in range(1, max(tf_sides) + 1):
            out[f"pos.pn{pn}"] = var.pos_for([pn])
        vq_gap = vq_min_gap(vae, h, tf_sides)

        labels = torch.tensor([3, args.classes - 2])
        out["tf.label_B"], out["tf.schedule"] = labels, torch.tensor(tf_sides)
        taps = {}
        hooks = [b.register_forward_hook(lambda m, i, o, k=k: taps.__setitem__(f"tf.block{k}.out", o))
                 for k, b in enumerate(var.blocks)]
        hooks.append(var.blocks[0].register_forward_hook(
            lambda m, i, o: taps.update({"tf.x_in": i[0], "tf.cond_BD_or_gss": i[1]})))
        out["tf.logits"] = var(labels, xt, tf_sides)
        for hk in hooks:
            hk.remove()
        out.update(taps)

        gap = float("inf")
        orig_sample = sys.modules["flexvar_model"].sample_top_k_top_p

        def argmax_sampler(logits, top_k=0, top_p=0.0, rng=None):
            nonlocal gap
            top2 = logits.topk(2, -1).values
            gap = min(gap, float((top2[..., 0] - top2[..., 1]).min()))
            return logits.argmax(-1)
        sys.modules["flexvar_model"].sample_top_k_top_p = argmax_sampler
        try:
            for name, lab, sched, cfg, max_pn, llama in runs:
                img, all_ids = var.autoregressive_infer_cfg(vae, torch.tensor(lab), sched, cfg=cfg, top_k=1,
                                                            max_pn=max_pn, used_llamagen_cfg=llama, return_ids=True)
                out[f"{name}.label_B"], out[f"{name}.schedule"] = torch.tensor(lab), torch.tensor(sched)
                out[f"{name}.cfg"] = torch.tensor(float(cfg))
                out[f"{name}.max_pn"] = torch.tensor(max_pn)
                out[f"{name}.used_llamagen_cfg"] = torch.tensor(int(llama))
                for si, i in enumerate(all_ids):
                    out[f"{name}.idx.s{si}"] = i
                out[f"{name}.img"] = img
        finally:
            sys.modules["flexvar_model"].sample_top_k_top_p = orig_sample
    if gap < 2e-3 or vq_gap < 1e-5:  # float32 noise: ~1e-4 on logits, ~1e-7 on unit-vector distances
        sys.exit(f"margins too small for exact ids (top-2 logit gap {gap:.2e}, VQ gap {vq_gap:.2e}): try another --seed")

    os.makedirs(args.out, exist_ok=True)
    torch.save(var.state_dict(), os.path.join(args.out, "var.pth"))
    torch.save({"model": vae.state_dict()}, os.path.join(args.out, "vae.pth"))
    write_safetensors(os.path.join(args.out, "golden.safetensors"), out)
    name = os.path.basename(os.path.abspath(args.out))
    cfg = {"fixture": name, "generated_by": "weights/train/make_flexvar_fixture.py (webvar's port flexvar_model.py, "
           "not the official code)", "image_size": args.image,
           "vae": {"V": args.vocab, "Cvae": args.cvae, "z_channels": 32, "ch": 32, "ch_mult": ch_mult,
                   "num_res_blocks": 1, "downsample": 2 ** (len(ch_mult) - 1)},
           "var": {"depth": args.depth, "embed_dim": args.width, "num_heads": args.heads,
                   "head_dim": args.width // args.heads, "mlp_ratio": args.mlp_ratio, "shared_aln": shared,
                   "attn_l2_norm": l2, "num_classes": args.classes, "patch_nums": list(train_sides)},
           "ar": [{"name": n, "labels": lab, "schedule": list(s), "cfg": c, "max_pn": m, "used_llamagen_cfg": ll}
                  for n, lab, s, c, m, ll in runs],
           "checks": {"min_top2_gap": gap, "vq_min_gap": vq_gap}}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "golden.md"), "w") as f:
        f.write(f"# {name}: FlexVAR goldens from webvar's port (weights/train/flexvar_model.py)\n\n"
                "Made by `weights/train/make_flexvar_fixture.py`; tensor names, layouts and tolerances as in "
                "testdata/flexvar-tiny/golden.md. Configuration: config.json.\n")
    print(f"wrote {args.out}: latent {P}, shared AdaLN {shared}, l2 attention {l2}, top-2 gap {gap:.3g}, "
          f"VQ gap {vq_gap:.3g}")


if __name__ == "__main__":
    main()
