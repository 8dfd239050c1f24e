"""Trains webvar's default model on Fashion-MNIST, in VAR's two stages, plus the judge classifier.

    python3 weights/train/train.py --out run/            # everything, on a GPU if there is one
    python3 weights/train/train.py --out run/ --stages vqvae,var --vae-steps 3000 --var-steps 6000

Writes run/vae.pth and run/var.pth (plain state_dicts with the official key names, like
vae_ch160v4096z32.pth / var_d16.pth), run/classifier.pth and run/train_log.json (hyperparameters, step
counts, losses, times). Step counts default to what fits a wall-clock budget (--vae-seconds, --var-seconds):
the first steps are timed and the cosine schedule is laid out over the steps that fit; the log records the
counts so a run can be repeated with explicit --vae-steps/--var-steps.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
from classifier import Classifier  # noqa: E402
from var import VAR  # noqa: E402
from vqvae import VQVAE  # noqa: E402


def log(*a):
    print(*a, flush=True)


def lr_at(step, total, peak, warmup_frac=0.05, floor=0.1):
    w = max(1, int(total * warmup_frac))
    if step < w:
        return peak * (step + 1) / w
    p = (step - w) / max(1, total - w)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def plan_steps(explicit, budget_s, step_fn, warm=20):
    """Runs `warm` steps (which count) and returns the total step count: explicit, or what fits budget_s."""
    t0 = time.time()
    for i in range(warm):
        step_fn(i, None)
    if explicit:
        return max(explicit, warm), (time.time() - t0) / warm
    per = (time.time() - t0) / warm
    return max(warm + 1, int(budget_s / per)), per


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def train_vqvae(args, device, x_train, x_test, rec):
    torch.manual_seed(args.seed)
    vae = VQVAE(vocab=args.vocab, z=args.cvae, ch=args.ch, ch_mult=args.ch_mult, patch_nums=args.patch_nums).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, betas=(0.9, 0.95), weight_decay=0.0)
    N, bs = x_train.shape[0], args.vae_batch
    hits = torch.zeros(args.vocab, device=device)
    state = {"total": None, "loss": []}

    def step(i, total):
        if i == 0:
            # Start the codebook on real encoder outputs: random init leaves most codes dead at this size.
            with torch.no_grad():
                f = vae.encode_f(x_train[torch.randint(0, N, (4096,), device=device)])
                f_NC = f.permute(0, 2, 3, 1).reshape(-1, args.cvae)
                vae.quantize.embedding.weight.copy_(f_NC[torch.randperm(f_NC.shape[0], device=device)[: args.vocab]])
        for g in opt.param_groups:
            g["lr"] = lr_at(i, total or 10 ** 9, args.vae_lr)
        x = x_train[torch.randint(0, N, (bs,), device=device)]
        with autocast(device):
            y, vq_loss, ids = vae(x)
        rec_loss = F.mse_loss(y.float(), x) + 0.5 * F.l1_loss(y.float(), x)
        loss = rec_loss + vq_loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 2.0)
        opt.step()
        with torch.no_grad():
            for t in ids:
                hits.index_add_(0, t.reshape(-1), torch.ones(t.numel(), device=device))
            if (i + 1) % args.restart_every == 0 and (total is None or i < 0.8 * total):
                # Dead-code restart: codes unused over the window jump to random current residual features.
                dead = (hits == 0).nonzero().view(-1)
                if dead.numel():
                    f = vae.encode_f(x[: min(bs, 256)])
                    f_NC = f.permute(0, 2, 3, 1).reshape(-1, args.cvae).float()
                    pick = f_NC[torch.randint(0, f_NC.shape[0], (dead.numel(),), device=device)]
                    vae.quantize.embedding.weight[dead] = pick + 0.01 * torch.randn_like(pick)
                state.setdefault("restarts", []).append(int(dead.numel()))
                hits.zero_()
        if i % 200 == 0:
            log(f"vqvae step {i}/{total} loss {loss.item():.4f} rec {rec_loss.item():.4f} vq {vq_loss.item():.4f}")
        state["loss"].append(float(loss.item()) if i % 50 == 0 else None)

    t0 = time.time()
    total, per = plan_steps(args.vae_steps, args.vae_seconds, step)
    for i in range(20, total):
        step(i, total)
    vae.eval()
    psnr, used = vqvae_quality(vae, x_test, device)
    rec["vqvae"] = dict(hparams=vae.hparams, steps=total, batch=bs, lr=args.vae_lr, seconds=time.time() - t0,
                        seconds_per_step=per, final_loss=state["loss"][-1] if state["loss"][-1] else None,
                        test_psnr_db=psnr, codes_used_on_test=used, restarts=state.get("restarts", []))
    log(f"vqvae done: {total} steps in {time.time() - t0:.0f}s, test PSNR {psnr:.2f} dB, {used}/{args.vocab} codes used")
    return vae


@torch.no_grad()
def vqvae_quality(vae, x, device, bs=1000):
    """Reconstruction PSNR (dB, images in [0, 1], mean over images of per-image PSNR) and distinct codes used."""
    psnrs, used = [], set()
    for i in range(0, x.shape[0], bs):
        xb = x[i:i + bs].to(device)
        ids = vae.img_to_ids(xb)
        y = vae.fhat_to_img(vae.quantize.ids_to_fhat(ids))
        mse = ((y - xb) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        psnrs.append(10 * torch.log10(1 / mse))
        for t in ids:
            used.update(t.unique().tolist())
    return float(torch.cat(psnrs).mean()), len(used)


@torch.no_grad()
def tokenize(vae, x, bs=2000):
    out = [[] for _ in vae.quantize.patch_nums]
    for i in range(0, x.shape[0], bs):
        for si, t in enumerate(vae.img_to_ids(x[i:i + bs])):
            out[si].append(t)
    return [torch.cat(o) for o in out]


def train_var(args, device, vae, ids_train, y_train, rec):
    torch.manual_seed(args.seed + 1)
    model = VAR(args.vocab, args.cvae, num_classes=10, depth=args.depth, width=args.width, heads=args.width // 64,
                patch_nums=args.patch_nums).to(device)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.ndim == 2 and "emb" not in n and "pos_" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.var_lr, betas=(0.9, 0.95))
    N, bs = y_train.shape[0], args.var_batch
    vae.eval()
    losses = []

    def step(i, total):
        for g in opt.param_groups:
            g["lr"] = lr_at(i, total or 10 ** 9, args.var_lr)
        sel = torch.randint(0, N, (bs,), device=device)
        ids = [t[sel] for t in ids_train]
        with torch.no_grad():
            x_in = vae.quantize.next_inputs(ids)
        target = torch.cat(ids, dim=1)
        with autocast(device):
            logits = model(y_train[sel], x_in)
        loss = F.cross_entropy(logits.float().reshape(-1, args.vocab), target.reshape(-1), label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        opt.step()
        if i % 200 == 0:
            log(f"var step {i}/{total} loss {loss.item():.4f}")
        if i % 50 == 0:
            losses.append(float(loss.item()))

    t0 = time.time()
    total, per = plan_steps(args.var_steps, args.var_seconds, step)
    for i in range(20, total):
        step(i, total)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    rec["var"] = dict(hparams=model.hparams, params=n_params, steps=total, batch=bs, lr=args.var_lr,
                      epochs=total * bs / N, seconds=time.time() - t0, seconds_per_step=per, losses_every_50=losses)
    log(f"var done: {total} steps ({total * bs / N:.1f} epochs) in {time.time() - t0:.0f}s, {n_params} params")
    return model


def train_classifier(args, device, x_train, y_train, x_test, y_test, rec):
    torch.manual_seed(args.seed + 2)
    clf = Classifier().to(device)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    g_train, g_test = fmnist.to_grey01(x_train), fmnist.to_grey01(x_test)
    N, bs = g_train.shape[0], 256
    total = args.clf_epochs * (N // bs)
    t0 = time.time()
    for i in range(total):
        for g in opt.param_groups:
            g["lr"] = lr_at(i, total, 2e-3)
        sel = torch.randint(0, N, (bs,), device=device)
        xb = g_train[sel]
        # Small shifts so the judge does not depend on exact centring (generated samples are not centred).
        dx, dy = [int(v) for v in torch.randint(-2, 3, (2,))]
        xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
        loss = F.cross_entropy(clf(xb), y_train[sel])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        acc = float((clf(g_test).argmax(1) == y_test).float().mean())
    rec["classifier"] = dict(epochs=args.clf_epochs, steps=total, test_accuracy=acc, seconds=time.time() - t0)
    log(f"classifier: test accuracy {acc:.4f} ({time.time() - t0:.0f}s)")
    return clf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None, help="Fashion-MNIST IDX directory (default /usr/share/datasets/fashion-mnist)")
    ap.add_argument("--stages", default="vqvae,var,classifier")
    ap.add_argument("--vae", default=None, help="an existing vae.pth to start the var stage from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--cvae", type=int, default=32)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--ch-mult", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--patch-nums", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3, 4, 5, 6, 8])
    ap.add_argument("--vae-batch", type=int, default=256)
    ap.add_argument("--vae-lr", type=float, default=4e-4)
    ap.add_argument("--vae-steps", type=int, default=0)
    ap.add_argument("--vae-seconds", type=float, default=150)
    ap.add_argument("--restart-every", type=int, default=200)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--var-batch", type=int, default=256)
    ap.add_argument("--var-lr", type=float, default=6e-4)
    ap.add_argument("--var-steps", type=int, default=0)
    ap.add_argument("--var-seconds", type=float, default=330)
    ap.add_argument("--clf-epochs", type=int, default=6)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count() or 1)  # Debian's torch starts with one thread
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    stages = set(args.stages.split(","))
    rec = dict(args=vars(args), device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               torch=torch.__version__, threads=torch.get_num_threads())
    t_all = time.time()
    xu, y = fmnist.load_split("train", args.data)
    xtu, yt = fmnist.load_split("test", args.data)
    if args.limit:
        xu, y = xu[: args.limit], y[: args.limit]
        xtu, yt = xtu[: args.limit], yt[: args.limit]
    x_train, x_test = fmnist.to_model_space(xu).to(device), fmnist.to_model_space(xtu).to(device)
    y_train, y_test = torch.from_numpy(y).to(device), torch.from_numpy(yt).to(device)

    def save_log():
        rec["total_seconds"] = time.time() - t_all
        with open(os.path.join(args.out, "train_log.json"), "w") as f:
            json.dump(rec, f, indent=1)

    if "classifier" in stages:
        clf = train_classifier(args, device, x_train, y_train, x_test, y_test, rec)
        torch.save({k: v.cpu() for k, v in clf.state_dict().items()}, os.path.join(args.out, "classifier.pth"))
        save_log()
    if "vqvae" in stages:
        vae = train_vqvae(args, device, x_train, x_test, rec)
        torch.save({k: v.float().cpu() for k, v in vae.state_dict().items()}, os.path.join(args.out, "vae.pth"))
        save_log()
    else:
        vae = VQVAE(vocab=args.vocab, z=args.cvae, ch=args.ch, ch_mult=args.ch_mult, patch_nums=args.patch_nums)
        vae.load_state_dict(torch.load(args.vae, map_location="cpu"))
        vae = vae.to(device).eval()
    if "var" in stages:
        ids_train = tokenize(vae, x_train)
        model = train_var(args, device, vae, ids_train, y_train, rec)
        torch.save({k: v.float().cpu() if v.is_floating_point() else v.cpu() for k, v in model.state_dict().items()},
                   os.path.join(args.out, "var.pth"))
        save_log()
    save_log()
    log(f"all done in {time.time() - t_all:.0f}s")


if __name__ == "__main__":
    main()
