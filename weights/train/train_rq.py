"""Trains a small RQ-Transformer demo model on Fashion-MNIST (32x32, RQ-VAE of stride 8 -> 4x4 code map with D=4
residual depths over one shared codebook) on the CPU, and writes it as an OFFICIAL kakaobrain/rq-vae-transformer
release directory, so that webvar loads it exactly as it loads an official release:

    OUT/stage1/config.yaml  OUT/stage1/model.pt = {'state_dict': sd, 'state_dict_ema': sd}  (RQ-VAE; no VAE EMA)
    OUT/stage2/config.yaml  OUT/stage2/model.pt = {'state_dict': sd, 'state_dict_ema': ema} (RQ-Transformer)

    /usr/bin/python3 weights/train/train_rq.py --out /work/runs/rq                    # vae, rq, eval
    /usr/bin/python3 weights/train/train_rq.py --out /work/runs/rq --stages eval      # judge only
    /usr/bin/python3 weights/train/train_rq.py --out /tmp/rq_smoke --limit 1000 --vae-seconds 20 --rq-seconds 20
    go run ./cmd/webvar generate -rq OUT -ema -class 1 -out x.png                   # the EMA weights, as eval

Stages:
  vae   RQ-VAE (taming encoder/decoder, GroupNorm 32): loss = MSE(decode(straight-through quant), x)
        + latent_loss_weight * commitment (mean over depths of |z_e - sg(quant_cumsum_d)|^2), no GAN / LPIPS.
        The shared codebook is NOT trained by gradient: EMA updates (decay 0.99) on every depth's residual with
        restart of unused codes (cluster_size_ema < 1 -> a random residual of the batch), as the official
        VQEmbedding(ema=True, restart_unused_codes=True); it is initialised from encoder outputs at step 0.
        Writes stage1/model.pt + stage1/config.yaml.
  rq    caches the codes of every image, trains the RQ-Transformer class-conditionally (cross entropy over all
        H*W*D codes, teacher forcing, as the official trainer), EMA of the weights.
        Writes stage2/model.pt + stage2/config.yaml (vqvae.ckpt: ../stage1/model.pt).
  eval  samples 10 classes x 10 seeds per setting (temperature:top_k:top_p) from the EMA weights, judges them with
        the classifier (weights/train/classifier.pth), picks the best setting (within one sample of the best
        accuracy, the more diverse), re-checks it on seeds 100-109, writes eval.json, samples/, grid.png and the
        chosen setting as stage2/config.yaml `sampling: {temp, top_k, top_p}` (read by core/rq as the release's
        defaults, as main_sampling_fid's sampling section).

Both training stages run for a wall-clock budget (--vae-seconds, --rq-seconds; cosine LR over elapsed time) or an
explicit step count. Every --ckpt-every seconds the release files, a resume state (*_state.pt) and train_log.json
are written; rerunning the same command resumes an interrupted stage. Helpers come from train_flexvar.py.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
from rq_model import rqtransformer_from_config, rqvae_from_config  # noqa: E402
from trainlib import (Run, ThreadTuner, add_common_args, batch_images, ints, judge, load_judge, log, lr_at,  # noqa: E402
                      official_state, save_atomic, save_png)

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE = fmnist.SIDE


def write_yaml(obj, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(obj, f, default_flow_style=False, sort_keys=False)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: RQ-VAE
# ----------------------------------------------------------------------------------------------------------------


def stage1_config(a):
    levels = len(a.ch_mult)
    lat = SIDE // 2 ** (levels - 1)
    return dict(
        dataset=dict(type="fashion-mnist", transforms=dict(type="28x28 padded to 32x32, grey copied to RGB, [-1, 1]")),
        arch=dict(type="rq-vae", code_hier=1,
                  hparams=dict(bottleneck_type="rq", embed_dim=a.embed_dim, n_embed=a.n_embed,
                               latent_shape=[lat, lat, a.embed_dim], code_shape=[lat, lat, a.depth],
                               shared_codebook=True, decay=a.decay, restart_unused_codes=True, loss_type="mse",
                               latent_loss_weight=a.latent_loss_weight),
                  ddconfig=dict(double_z=False, z_channels=a.z_channels, resolution=SIDE, in_channels=3, out_ch=3,
                                ch=a.ch, ch_mult=list(a.ch_mult), num_res_blocks=a.num_res_blocks,
                                attn_resolutions=list(a.attn_resolutions), dropout=0.0),
                  checkpointing=False))


@torch.no_grad()
def vae_quality(vae, x_u8, labels, clf, n=1000, bs=500):
    """Test PSNR (dB, [0,1] pixels) of the full-depth reconstruction and of depth 1 only, the judge's accuracy on
    reconstructions, and the number of distinct codes used per depth."""
    vae.eval()
    ps, ps1, ok, used = [], [], [], None
    for i in range(0, min(n, x_u8.shape[0]), bs):
        idx = torch.arange(i, min(i + bs, n, x_u8.shape[0]))
        xb = batch_images(x_u8, idx)
        codes = vae.get_codes(xb)
        u = [set(codes[..., d].flatten().tolist()) for d in range(codes.shape[-1])]
        used = u if used is None else [a | b for a, b in zip(used, u)]
        for rec, acc in ((vae.decode_code(codes), ps), (vae.decode_partial_code(codes, 0), ps1)):
            mse = ((rec.clamp(-1, 1) - xb) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            acc.append(10 * torch.log10(1 / mse))
            if acc is ps:
                ok.append(clf(fmnist.to_grey01(rec)).argmax(1) == labels[idx])
    vae.train()
    return (float(torch.cat(ps).mean()), float(torch.cat(ps1).mean()), float(torch.cat(ok).float().mean()),
            [len(s) for s in used])


def train_vae(run, x_train, x_test, y_test):
    a = run.args
    torch.manual_seed(a.seed)
    cfg = stage1_config(a)
    vae = rqvae_from_config(cfg["arch"])
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.vae_lr, betas=(0.9, 0.95), weight_decay=0.0)
    st = dict(step=0, elapsed=0.0, losses=[], evals=[])
    sp = run.p("vae_state.pt")
    if os.path.exists(sp):
        s = torch.load(sp)
        vae.load_state_dict(s["model"])
        vae.quantizer.codebook.initted = True
        opt.load_state_dict(s["opt"])
        st = s["st"]
        log(f"vae: resuming at step {st['step']} ({st['elapsed']:.0f}s done)")
    N, bs = x_train.shape[0], a.vae_batch
    n_params = sum(p.numel() for p in params)
    rec = run.rec.setdefault("vae", {})
    rec.update(config=cfg, params=n_params, batch=bs, lr=a.vae_lr, budget_seconds=a.vae_seconds,
               explicit_steps=a.vae_steps,
               loss="mse(decode(straight-through quant), x) + latent_loss_weight * commitment; codebook by EMA")
    gen = torch.Generator().manual_seed(a.seed + st["step"])
    clf = load_judge(a.classifier)
    tuner = ThreadTuner(a.threads)
    vae.train()
    t_last, t_ck, t_start = time.time(), time.time(), time.time() - st["elapsed"]

    def progress():
        return st["step"] / a.vae_steps if a.vae_steps else st["elapsed"] / a.vae_seconds

    def evaluate():
        psnr, psnr1, jacc, used = vae_quality(vae, x_test, y_test, clf, a.eval_images)
        st["evals"].append(dict(step=st["step"], t=round(st["elapsed"], 1), test_psnr=psnr, test_psnr_depth1=psnr1,
                                judge_acc_recon=jacc, codes_used_per_depth=used))
        log(f"vae eval step {st['step']}: test PSNR {psnr:.2f} dB (depth 1 only {psnr1:.2f}), judge on "
            f"reconstructions {jacc:.3f}, codes used per depth {used}")

    def checkpoint(final=False):
        write_yaml(cfg, run.p("stage1/config.yaml"))
        # state_dict_ema = the same weights (no EMA of the VAE weights), so the file has the official trainer's
        # shape; the sampler (official and webvar's -ema alike) reads stage 1's state_dict.
        save_atomic({"state_dict": official_state(vae), "state_dict_ema": official_state(vae)},
                    run.p("stage1/model.pt"))
        save_atomic(dict(model=vae.state_dict(), opt=opt.state_dict(), st=st), sp)
        rec.update(steps=st["step"], seconds=st["elapsed"], images_per_second=st["step"] * bs / max(1e-9, st["elapsed"]),
                   epochs=st["step"] * bs / N, losses=st["losses"], evals=st["evals"], done=final,
                   thread_history=tuner.history)
        run.save_log()

    while progress() < 1.0:
        i = st["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(a.vae_lr, i, progress(), a.warmup_steps)
        x = batch_images(x_train, torch.randint(0, N, (bs,), generator=gen))
        z = vae.encode(x)
        if not vae.quantizer.codebook.initted:
            vae.quantizer.codebook.init_from(z.detach(), gen)
        quant, commitment, codes = vae.quantizer(z, update=True, gen=gen)
        y = vae.decode(quant)
        rec_loss = F.mse_loss(y, x)
        loss = rec_loss + a.latent_loss_weight * commitment
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        tuner.step(bs)
        now = time.time()
        st["elapsed"] = now - t_start
        st["step"] = i + 1
        if i % 25 == 0:
            st["losses"].append(dict(step=i, t=round(st["elapsed"], 1), lr=opt.param_groups[0]["lr"], threads=tuner.cur,
                                     loss=round(float(loss), 5), rec=round(float(rec_loss), 5),
                                     commitment=round(float(commitment), 5), grad_norm=round(float(gn), 4)))
        if i % 50 == 0:
            log(f"vae step {i} t={st['elapsed']:.0f}s p={progress():.3f} loss {float(loss):.4f} rec {float(rec_loss):.4f} "
                f"commit {float(commitment):.4f} lr {opt.param_groups[0]['lr']:.2e} "
                f"({50 * bs / max(1e-9, now - t_last):.1f} img/s)")
            t_last = now
        if now - t_ck > a.ckpt_every:
            evaluate()
            checkpoint()
            t_ck = time.time()
            tuner.restart_window()
    evaluate()
    checkpoint(final=True)
    log(f"vae done: {st['step']} steps ({st['step'] * bs / N:.2f} epochs) in {st['elapsed']:.0f}s, {n_params} params")
    return vae.eval()


def load_vae(run):
    cfg = yaml.safe_load(open(run.p("stage1/config.yaml")))
    vae = rqvae_from_config(cfg["arch"])
    vae.load_state_dict(torch.load(run.p("stage1/model.pt"), map_location="cpu")["state_dict"], strict=True)
    return vae.eval()


@torch.no_grad()
def cache_codes(vae, x_u8, bs=500):
    vae.eval()
    return torch.cat([vae.get_codes(batch_images(x_u8, torch.arange(i, min(i + bs, x_u8.shape[0]))))
                      for i in range(0, x_u8.shape[0], bs)])


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: RQ-Transformer
# ----------------------------------------------------------------------------------------------------------------


def stage2_config(a, vae_cfg, sampling=None):
    h = vae_cfg["arch"]["hparams"]
    blk = dict(embed_dim=a.width, n_head=a.heads, mlp_bias=True, attn_bias=True, attn_pdrop=0.0,
               resid_pdrop=a.dropout, gelu="v1")
    cfg = dict(
        dataset=dict(type="fashion-mnist", vocab_size=h["n_embed"]),
        vqvae=dict(ckpt="../stage1/model.pt"),
        arch=dict(type="rq-transformer", vocab_size=h["n_embed"], block_size=list(h["code_shape"]),
                  embed_dim=a.width, input_embed_dim=h["embed_dim"], shared_tok_emb=True, shared_cls_emb=True,
                  input_emb_vqvae=True, head_emb_vqvae=True, cumsum_depth_ctx=True, use_padding_emb=False,
                  scaled_head_emb_vqvae=False, vocab_size_cond=10, block_size_cond=1, embd_pdrop=0.0,
                  body=dict(n_layer=a.body_layers, block=dict(blk)), head=dict(n_layer=a.head_layers, block=dict(blk))))
    if sampling:
        cfg["sampling"] = sampling
    return cfg


def ema_update(ema, model, decay):
    with torch.no_grad():
        for k, v in model.state_dict().items():
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)


@torch.no_grad()
def rq_test_loss(model, cb, codes, y, bs=500):
    model.eval()
    tot, n = 0.0, 0
    per_depth = torch.zeros(codes.shape[-1])
    for i in range(0, codes.shape[0], bs):
        c = codes[i:i + bs]
        lg = model(c, cb, y[i:i + bs])
        ce = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), c.reshape(-1), reduction="none").view(c.shape)
        tot += float(ce.sum())
        per_depth += ce.sum((0, 1, 2))
        n += c.numel()
    model.train()
    return tot / n, (per_depth / (n / codes.shape[-1])).tolist()


def write_stage2(run, cfg, model, ema):
    write_yaml(cfg, run.p("stage2/config.yaml"))
    save_atomic({"state_dict": official_state(model), "state_dict_ema": official_state(model, ema)},
                run.p("stage2/model.pt"))


def train_rq(run, vae, codes, y_train, codes_t, y_test):
    a = run.args
    torch.manual_seed(a.seed + 1)
    vcfg = yaml.safe_load(open(run.p("stage1/config.yaml")))
    cfg = stage2_config(a, vcfg)
    model = rqtransformer_from_config(cfg["arch"])
    cb = vae.quantizer.codebook.weight.detach()
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in n else no_decay).append(p)
    opt = torch.optim.AdamW([dict(params=decay, weight_decay=a.rq_wd), dict(params=no_decay, weight_decay=0.0)],
                            lr=a.rq_lr, betas=(0.9, 0.95))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    st = dict(step=0, elapsed=0.0, losses=[], evals=[])
    sp = run.p("rq_state.pt")
    if os.path.exists(sp):
        s = torch.load(sp)
        model.load_state_dict(s["model"])
        ema = s["ema"]
        opt.load_state_dict(s["opt"])
        st = s["st"]
        log(f"rq: resuming at step {st['step']} ({st['elapsed']:.0f}s done)")
    N, bs = codes.shape[0], a.rq_batch
    n_params = sum(p.numel() for p in model.parameters())
    rec = run.rec.setdefault("rq", {})
    rec.update(config=cfg, params=n_params, batch=bs, lr=a.rq_lr, budget_seconds=a.rq_seconds,
               explicit_steps=a.rq_steps, loss="cross entropy over all H*W*D codes (teacher forcing)")
    gen = torch.Generator().manual_seed(a.seed + 7 + st["step"])
    clf = load_judge(a.classifier)
    tuner = ThreadTuner(a.threads)
    model.train()
    t_last, t_ck, t_start = time.time(), time.time(), time.time() - st["elapsed"]

    def progress():
        return st["step"] / a.rq_steps if a.rq_steps else st["elapsed"] / a.rq_seconds

    def ema_model():
        m = rqtransformer_from_config(cfg["arch"])
        m.load_state_dict(ema)
        return m.eval()

    def evaluate():
        em = ema_model()
        tl, pd = rq_test_loss(em, cb, codes_t, y_test)
        ev = dict(step=st["step"], t=round(st["elapsed"], 1), test_loss_ema=tl, test_loss_per_depth=pd)
        if a.probe_seeds > 0:
            imgs, labels = generate(em, vae, range(a.probe_seeds), 1.0, 0, 1.0)
            acc, _, div = judge(clf, imgs, labels)
            ev.update(probe_judge_acc=acc, probe_same_class_rms=div, probe_setting="temperature 1, no top-k/top-p")
        st["evals"].append(ev)
        log(f"rq eval step {st['step']}: test loss (EMA) {tl:.4f} per depth {[round(v, 3) for v in pd]}" +
            (f", probe judge accuracy {ev['probe_judge_acc']:.2f}" if a.probe_seeds > 0 else ""))

    def checkpoint(final=False):
        write_stage2(run, cfg, model, ema)
        save_atomic(dict(model=model.state_dict(), ema=ema, opt=opt.state_dict(), st=st), sp)
        rec.update(steps=st["step"], seconds=st["elapsed"], images_per_second=st["step"] * bs / max(1e-9, st["elapsed"]),
                   epochs=st["step"] * bs / N, losses=st["losses"], evals=st["evals"], done=final,
                   thread_history=tuner.history)
        run.save_log()

    while progress() < 1.0:
        i = st["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(a.rq_lr, i, progress(), a.warmup_steps)
        sel = torch.randint(0, N, (bs,), generator=gen)
        c = codes[sel]
        lg = model(c, cb, y_train[sel])
        loss = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), c.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        ema_update(ema, model, min(a.ema, (1 + i) / (10 + i)))
        tuner.step(bs)
        now = time.time()
        st["elapsed"] = now - t_start
        st["step"] = i + 1
        if i % 25 == 0:
            st["losses"].append(dict(step=i, t=round(st["elapsed"], 1), lr=opt.param_groups[0]["lr"], threads=tuner.cur,
                                     loss=round(float(loss), 5), grad_norm=round(float(gn), 4)))
        if i % 100 == 0:
            log(f"rq step {i} t={st['elapsed']:.0f}s p={progress():.3f} loss {float(loss):.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e} ({100 * bs / max(1e-9, now - t_last):.1f} img/s)")
            t_last = now
        if now - t_ck > a.ckpt_every:
            evaluate()
            checkpoint()
            t_ck = time.time()
            tuner.restart_window()
    evaluate()
    checkpoint(final=True)
    log(f"rq done: {st['step']} steps ({st['step'] * bs / N:.2f} epochs) in {st['elapsed']:.0f}s, {n_params} params")
    return ema_model()


# ----------------------------------------------------------------------------------------------------------------
# Stage 3: judge evaluation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, vae, seeds, temperature, top_k, top_p):
    """Images (len(seeds)*10, 3, 32, 32) in [-1, 1] (unclamped), labels; classes 0..9 per seed, one batch per seed
    with torch.Generator(seed) for the multinomial draws."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cb = vae.quantizer.codebook.weight
    imgs, labels = [], []
    for s in seeds:
        lab = torch.arange(10)
        codes = model.sample(cb, lab, temperature, top_k or None, top_p if top_p < 1.0 else None,
                             torch.Generator().manual_seed(int(s)))
        imgs.append(vae.decode_code(codes))
        labels.append(lab)
    torch.set_num_threads(threads)
    return torch.cat(imgs), torch.cat(labels)


def parse_setting(s):
    t, k, p = s.split(":")
    return dict(temperature=float(t), top_k=int(k), top_p=float(p))


def run_eval(run, vae, model):
    a = run.args
    clf = load_judge(a.classifier)
    results = []
    t0 = time.time()
    for s in [parse_setting(s) for s in a.eval_settings.split(",")]:
        ts = time.time()
        imgs, labels = generate(model, vae, range(10), s["temperature"], s["top_k"], s["top_p"])
        acc, per, div = judge(clf, imgs, labels)
        results.append(dict(s, accuracy=acc, same_class_rms_median=div, per_class=per, seconds=time.time() - ts))
        log(f"eval {s}: judge accuracy {acc:.2f} (same-class rms {div:.3f}) in {time.time() - ts:.0f}s")
    best_acc = max(r["accuracy"] for r in results)
    best = max((r for r in results if r["accuracy"] >= best_acc - 0.011), key=lambda r: r["same_class_rms_median"])
    bs = (best["temperature"], best["top_k"], best["top_p"])
    imgs, labels = generate(model, vae, range(10), *bs)
    sdir = run.p("samples")
    os.makedirs(sdir, exist_ok=True)
    for n in range(imgs.shape[0]):
        save_png(imgs[n], os.path.join(sdir, f"class{int(labels[n])}_seed{n // 10}.png"))
    grid = imgs.view(10, 10, *imgs.shape[1:]).permute(1, 0, 2, 3, 4)  # rows = classes, columns = seeds
    grid = grid.permute(2, 0, 3, 1, 4).reshape(3, 10 * imgs.shape[-2], 10 * imgs.shape[-1])
    save_png(grid, run.p("grid.png"))
    imgs2, labels2 = generate(model, vae, range(100, 110), *bs)
    acc2, per2, div2 = judge(clf, imgs2, labels2)
    # the release's sampling defaults (core/rq reads sampling.temp / top_k / top_p; top_k 0 = none: key omitted)
    sampling = dict(temp=best["temperature"], top_p=best["top_p"])
    if best["top_k"] > 0:
        sampling["top_k"] = best["top_k"]
    out = dict(weights="state_dict_ema (webvar: -ema)",
               seeds="0..9 (classes 0..9 per seed in one batch; multinomial draws from torch.Generator(seed))",
               default=dict(temperature=best["temperature"], top_k=best["top_k"], top_p=best["top_p"],
                            accuracy=best["accuracy"], per_class=best["per_class"],
                            same_class_rms_median=best["same_class_rms_median"]),
               recheck_seeds_100_109=dict(accuracy=acc2, per_class=per2, same_class_rms_median=div2),
               grid=results, classifier=os.path.abspath(a.classifier), seconds=time.time() - t0)
    with open(run.p("eval.json"), "w") as f:
        json.dump(out, f, indent=1)
    cfg = yaml.safe_load(open(run.p("stage2/config.yaml")))
    cfg["sampling"] = sampling
    write_yaml(cfg, run.p("stage2/config.yaml"))
    run.rec["eval"] = dict(default=out["default"], recheck_accuracy=acc2)
    run.save_log()
    log(f"eval: default {sampling}: accuracy {best['accuracy']:.2f} (re-check on seeds 100-109: {acc2:.2f})")


# ----------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "vae,rq,eval", eval_images_help="test images for the VAE / RQ test metrics")
    # RQ-VAE
    ap.add_argument("--embed-dim", type=int, default=16)
    ap.add_argument("--n-embed", type=int, default=256)
    ap.add_argument("--depth", type=int, default=4, help="residual depths D")
    ap.add_argument("--z-channels", type=int, default=32)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--ch-mult", type=ints, default=[1, 1, 2, 2], help="4 levels: stride 8, 32x32 -> 4x4 codes")
    ap.add_argument("--num-res-blocks", type=int, default=1)
    ap.add_argument("--attn-resolutions", type=ints, default=[4])
    ap.add_argument("--decay", type=float, default=0.99, help="codebook EMA decay")
    ap.add_argument("--latent-loss-weight", type=float, default=0.25)
    ap.add_argument("--vae-batch", type=int, default=64)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-seconds", type=float, default=1500)
    ap.add_argument("--vae-steps", type=int, default=0)
    # RQ-Transformer
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--body-layers", type=int, default=4)
    ap.add_argument("--head-layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1, help="resid_pdrop (official 0.1)")
    ap.add_argument("--rq-batch", type=int, default=128)
    ap.add_argument("--rq-lr", type=float, default=1e-3)
    ap.add_argument("--rq-wd", type=float, default=0.01)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--rq-seconds", type=float, default=1800)
    ap.add_argument("--rq-steps", type=int, default=0)
    ap.add_argument("--probe-seeds", type=int, default=2, help="seeds x 10 classes sampled and judged at each eval")
    # eval
    ap.add_argument("--classifier", default=os.path.join(HERE, "classifier.pth"))
    ap.add_argument("--eval-settings", default="1.0:0:1.0,1.0:0:0.9,1.0:0:0.8,1.0:32:1.0,1.0:8:1.0,0.8:0:1.0",
                    help="comma-separated temperature:top_k:top_p (top_k 0 = none, top_p 1 = none)")
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)
    run = Run(args)
    stages = args.stages.split(",")
    xu, y = fmnist.load_split("train", args.data)
    xtu, yt = fmnist.load_split("test", args.data)
    if args.limit:
        xu, y = xu[: args.limit], y[: args.limit]
    xtu, yt = xtu[: args.eval_images], yt[: args.eval_images]
    y_train, y_test = torch.from_numpy(y), torch.from_numpy(yt)
    log(f"data: {xu.shape[0]} train, {xtu.shape[0]} test images; stages {stages}; out {args.out}")

    vae = None
    if "vae" in stages and not run.rec.get("vae", {}).get("done"):
        vae = train_vae(run, xu, xtu, y_test)
    if vae is None:
        vae = load_vae(run)
    for p in vae.parameters():
        p.requires_grad_(False)

    model = None
    if "rq" in stages and not run.rec.get("rq", {}).get("done"):
        cp = run.p("codes.pt")
        if os.path.exists(cp) and run.rec.get("codes", {}).get("vae_steps") == run.rec.get("vae", {}).get("steps"):
            codes, codes_t = torch.load(cp)
        else:
            t0 = time.time()
            codes, codes_t = cache_codes(vae, xu), cache_codes(vae, xtu)
            save_atomic((codes, codes_t), cp)
            run.rec["codes"] = dict(seconds=time.time() - t0, vae_steps=run.rec.get("vae", {}).get("steps"),
                                    train=int(codes.shape[0]), test=int(codes_t.shape[0]))
            run.save_log()
            log(f"cached the codes of {codes.shape[0] + codes_t.shape[0]} images in {time.time() - t0:.0f}s")
        model = train_rq(run, vae, codes, y_train, codes_t, y_test)
    if "eval" in stages:
        if model is None:
            cfg = yaml.safe_load(open(run.p("stage2/config.yaml")))
            model = rqtransformer_from_config(cfg["arch"])
            model.load_state_dict(torch.load(run.p("stage2/model.pt"), map_location="cpu")["state_dict_ema"])
        run_eval(run, vae, model.eval())
    run.save_log()
    log(f"all done in {time.time() - run.t0:.0f}s")


if __name__ == "__main__":
    main()
