"""Records the greedy tokens that PyTorch produces on a model, for the Go engine's agreement test.

    python3 weights/train/record_tokens.py --weights weights/fashion-var --out testdata/fashion-var-greedy.json
    python3 weights/train/record_tokens.py --var run/var.pth --vae run/vae.pth --out /tmp/f32.json

--weights reads the converted directory (exactly the shipped, quantized weights, dequantized as FORMAT.md
says); --var/--vae read the f32 training checkpoints. Runs on the CPU in float32, one class per row, and
records each run's smallest top-2 gap of the guided logits: a large gap means float rounding differences
between engines cannot flip a greedy decision.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import webvar_weights  # noqa: E402
from models_from_state import build_var, build_vqvae  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights")
    ap.add_argument("--var")
    ap.add_argument("--vae")
    ap.add_argument("--patch-nums", default="1,2,3,4,5,6,8")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--cfg", type=float, nargs="+", default=[0.0, 3.0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    pn = [int(v) for v in args.patch_nums.split(",")]
    if args.weights:
        man, sd = webvar_weights.load(args.weights)
        pn = [int(v) for v in man["config"].get("patch_nums", pn)]
        var_sd, vae_sd = webvar_weights.split(sd, "var."), webvar_weights.split(sd, "vae.")
        source = os.path.basename(os.path.normpath(args.weights))
    else:
        var_sd, vae_sd = torch.load(args.var, map_location="cpu"), torch.load(args.vae, map_location="cpu")
        source = f"{os.path.basename(args.var)} + {os.path.basename(args.vae)}"
    vae, var = build_vqvae(vae_sd, pn), build_var(var_sd, pn)
    runs = []
    for cfg in args.cfg:
        for c in [int(v) for v in args.classes.split(",")]:
            ids, gap = var.generate(vae, torch.tensor([c]), cfg=cfg, top_k=1, return_gaps=True)
            runs.append(dict(label=c, cfg=cfg, tokens=[t[0].tolist() for t in ids], min_top2_gap=gap))
            print(f"class {c} cfg {cfg}: min top-2 gap {gap:.4g}")
    rec = dict(source=source, patch_nums=pn, top_k=1, torch=torch.__version__,
               note="greedy (top_k=1) tokens from weights/train/var.py on the CPU in float32", runs=runs)
    with open(args.out, "w") as f:
        json.dump(rec, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
