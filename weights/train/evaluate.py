"""Measures the default model's quality (the numbers in weights/README.md).

    python3 weights/train/evaluate.py psnr --weights weights/fashion-var
    python3 weights/train/evaluate.py judge --classifier weights/train/classifier.pth
    python3 weights/train/evaluate.py samples --classifier run/classifier.pth --dir samples/

`psnr`: VQVAE reconstruction PSNR on the 10k Fashion-MNIST test images through the shipped (converted)
weights: image -> multi-scale tokens -> image, PSNR in dB on [0, 1] pixels, mean over images.

`judge`: the classifier's accuracy on the real test images (overall and per class).

`samples`: judges images made by `webvar generate -grid ... -samples DIR` (files class<C>_seed<S>.png): the
fraction the independent classifier assigns to the requested class (per class and overall), how different
the samples of one class are from each other, and the distance of each sample to its nearest training image
(compared with the same distance for real test images, which are certainly not copies).
"""

import argparse
import glob
import json
import os
import re
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
import webvar_weights  # noqa: E402
from classifier import Classifier  # noqa: E402
from models_from_state import build_vqvae  # noqa: E402


def cmd_psnr(args):
    man, sd = webvar_weights.load(args.weights)
    pn = [int(v) for v in man["config"]["patch_nums"]]
    vae = build_vqvae(webvar_weights.split(sd, "vae."), pn)
    x, _ = fmnist.load_split("test", args.data)
    x = fmnist.to_model_space(x[: args.limit] if args.limit else x)
    psnrs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], 500):
            xb = x[i:i + 500]
            y = vae.fhat_to_img(vae.quantize.ids_to_fhat(vae.img_to_ids(xb)))
            mse = ((y - xb) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            psnrs.append(10 * torch.log10(1 / mse))
    p = torch.cat(psnrs)
    out = dict(images=int(p.numel()), psnr_mean_db=float(p.mean()), psnr_median_db=float(p.median()))
    print(json.dumps(out))


def cmd_judge(args):
    """The judge's accuracy on the 10k real test images, overall and per class."""
    x, y = fmnist.load_split("test", args.data)
    x, y = fmnist.to_grey01(fmnist.to_model_space(x)), torch.from_numpy(y)
    clf = Classifier()
    clf.load_state_dict(torch.load(args.classifier, map_location="cpu"))
    clf.eval()
    with torch.no_grad():
        pred = torch.cat([clf(x[i:i + 1000]).argmax(1) for i in range(0, x.shape[0], 1000)])
    ok = pred == y
    out = dict(images=int(y.numel()), accuracy=float(ok.float().mean()),
               per_class={fmnist.CLASS_NAMES[c]: float(ok[y == c].float().mean()) for c in range(10)})
    print(json.dumps(out, indent=1))


def load_png_grey(path):
    from PIL import Image
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a.mean(axis=2))[None]  # [1, H, W] in [0, 1]


def cmd_samples(args):
    files = sorted(glob.glob(os.path.join(args.dir, "class*_seed*.png")))
    if not files:
        sys.exit(f"no class<C>_seed<S>.png files in {args.dir}")
    labels, imgs = [], []
    for f in files:
        m = re.search(r"class(\d+)_seed(\d+)\.png$", f)
        labels.append(int(m.group(1)))
        imgs.append(load_png_grey(f))
    x = torch.stack(imgs)  # [N, 1, 32, 32]
    y = torch.tensor(labels)
    clf = Classifier()
    clf.load_state_dict(torch.load(args.classifier, map_location="cpu"))
    clf.eval()
    with torch.no_grad():
        pred = clf(x).argmax(1)
    per_class = {}
    for c in sorted(set(labels)):
        sel = y == c
        per_class[fmnist.CLASS_NAMES[c]] = dict(n=int(sel.sum()), accuracy=float((pred[sel] == c).float().mean()))
    # Distances in grey [0, 1] pixel space, RMS over the 32x32 image.
    xt, _ = fmnist.load_split("train", args.data)
    train = fmnist.to_grey01(fmnist.to_model_space(xt)).flatten(1)  # [60000, 1024]
    xs, _ = fmnist.load_split("test", args.data)
    test = fmnist.to_grey01(fmnist.to_model_space(xs[:1000])).flatten(1)

    def nn_rms(q):
        d2 = (q.pow(2).sum(1, keepdim=True) + train.pow(2).sum(1) - 2 * q @ train.t()).clamp_min(0)
        return (d2.min(1).values / q.shape[1]).sqrt()

    nn_samples, nn_test = nn_rms(x.flatten(1)), nn_rms(test)
    within = []
    for c in sorted(set(labels)):
        q = x[y == c].flatten(1)
        d = torch.cdist(q, q) / q.shape[1] ** 0.5
        within.append(d[~torch.eye(len(q), dtype=torch.bool)])
    within = torch.cat(within)
    out = dict(samples=len(files), accuracy=float((pred == y).float().mean()), per_class=per_class,
               nearest_train_rms=dict(samples_min=float(nn_samples.min()), samples_median=float(nn_samples.median()),
                                      test_images_min=float(nn_test.min()), test_images_median=float(nn_test.median())),
               same_class_pair_rms=dict(min=float(within.min()), median=float(within.median())))
    print(json.dumps(out, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("psnr")
    p.add_argument("--weights", required=True)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--data")
    j = sub.add_parser("judge")
    j.add_argument("--classifier", required=True)
    j.add_argument("--data")
    s = sub.add_parser("samples")
    s.add_argument("--classifier", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--data")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    {"psnr": cmd_psnr, "judge": cmd_judge, "samples": cmd_samples}[args.cmd](args)


if __name__ == "__main__":
    main()
