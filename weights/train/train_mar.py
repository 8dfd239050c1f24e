"""Trains a small MAR demo model on Fashion-MNIST (32x32, KL VAE of stride 8 -> 4x4 tokens of 16 channels) on the
CPU, in the official LTH14/mar layouts, so that webvar loads it exactly as it loads the official checkpoints.

    /usr/bin/python3 weights/train/train_mar.py --out /work/runs/mar                        # vae, mar, eval
    /usr/bin/python3 weights/train/train_mar.py --out /work/runs/mar --stages eval          # judge only
    /usr/bin/python3 weights/train/train_mar.py --out /tmp/smoke --limit 2000 --vae-seconds 30 --mar-seconds 30

Stages:
  vae   KL VAE (LDM AutoencoderKL layout): loss = MSE + 0.5 L1 on posterior samples + kl_weight * KL (mean per latent
        element); no GAN, no LPIPS. Writes vae.pth = {'model': state_dict} (as the official kl16.ckpt). At the end
        it measures the std of posterior samples of 10k training images and sets scale_factor = 1 / std (the
        official KL-16's 0.2325 plays the same role), recorded in config.json.
  dec   (optional, after vae) fine-tunes post_quant_conv + decoder alone on posterior samples of the cached
        moments with the vae stage's reconstruction loss: the encoder, the latents, the scale factor and a MAR
        trained on them stay valid, so it can run after (or beside, in a copy of --out) the mar stage.
  mar   caches the posterior moments of every training image, then trains MAR + DiffLoss on scaled posterior
        samples (as the official --use_cached): random orders, one mask ratio per batch from N(1, 0.25) truncated
        to [mask_ratio_min, 1], loss on masked tokens only, class embedding replaced by fake_latent with
        probability label_drop_prob (for CFG), diffusion_batch_mul copies of every token with their own t and
        noise, loss = MSE(eps) + VLB (learned variance). EMA of the weights is used for sampling.
        Beyond the official recipe: the diffusion head runs only on masked tokens (same loss), and a fraction
        (--t-last-frac) of its rows is trained at t = 999 with a larger weight (--t-last-weight), because every
        sampler starts there and amplifies the eps error by ~2e4 * sqrt(acp(second step)) (see DiffLoss.forward);
        each eval logs that error (eps_rms_err_ema['999']). The first step moves the latent by ~632 / 316 / 126 /
        63 x that error at 50 / 100 / 250 / 500 steps, and samples stay sane up to ~0.6 (measured by replacing the
        network's eps at t=999 with x_t + noise), so ~1e-3 is needed at 50 steps, ~5e-3 at 250, ~1e-2 at 500.
        Writes mar.pth = {'model': sd, 'model_ema': ema_sd} (as the official checkpoint-last.pth).
  eval  samples 10 classes x 10 seeds per setting (iterations : cfg : temperature : diffusion steps; linear CFG
        schedule) with the official sampler from the EMA weights, judges them with the classifier
        (weights/train/classifier.pth), picks the best setting (among those within one sample of the best, the
        cheapest, then the more diverse), re-checks it on seeds 100-109, writes eval.json,
        samples/class<C>_seed<S>.png, grid.png, and the default sampling settings into config.json.

config.json holds what the Go loader cannot read from the tensors (heads, buffer_size, patch_size, vae_stride,
scale factor, image size, attention resolutions, diffusion steps) and is rewritten by every stage.

The training stages run for a wall-clock budget (--vae-seconds, --dec-seconds, --mar-seconds; cosine LR over elapsed
time), or for an explicit step count (--vae-steps, --dec-steps, --mar-steps). Every --ckpt-every seconds the usable
checkpoint (vae.pth / mar.pth), a resume state (*_state.pt) and train_log.json are written; rerunning the same command
resumes an interrupted stage. Helpers (logging, thread tuning, LR schedule, judge) come from trainlib.py.
"""

import argparse
import json
import os
import sys
import time

# Threads that wait for a busy core spin by default (GNU OpenMP): on this shared 2-core machine that made 2 threads
# 3x slower than 1; passive waiting keeps 2 threads close to 1 under load (ThreadTuner then picks the faster).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fmnist  # noqa: E402
from mar_model import MAR, AutoencoderKL, mar_from_state, vae_from_state  # noqa: E402
from trainlib import (Run, ThreadTuner, add_common_args, batch_images, ints, judge, load_judge, log, lr_at,  # noqa: E402
                      official_state, save_atomic, save_png)

HERE = os.path.dirname(os.path.abspath(__file__))
SIDE = fmnist.SIDE  # 32: 28x28 padded by 2 background pixels (no resampling)


def write_config(run, **sections):
    """config.json: the hyperparameters the Go loader cannot read from the tensors. Sections merge."""
    p = run.p("config.json")
    cfg = json.load(open(p)) if os.path.exists(p) else {}
    cfg.update(family="mar", official_repo="LTH14/mar", image_size=SIDE,
               data="Fashion-MNIST 28x28 grey, padded by 2 background pixels to 32x32, grey copied to RGB, [-1, 1]",
               class_names=list(fmnist.CLASS_NAMES))
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    tmp = p + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=1)
    os.replace(tmp, p)
    return cfg


def read_config(run):
    p = run.p("config.json")
    return json.load(open(p)) if os.path.exists(p) else {}


# ----------------------------------------------------------------------------------------------------------------
# Stage 1: KL VAE
# ----------------------------------------------------------------------------------------------------------------


def make_vae(a):
    # Attention in the encoder's last level and in both mid blocks, none in the decoder's levels (as kl16).
    return AutoencoderKL(a.embed_dim, a.ch, a.ch_mult, a.num_res_blocks, None, SIDE, ())


def kl_per_element(mean, logvar):
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


@torch.no_grad()
def vae_quality(vae, x_u8, labels, clf, n=2000, bs=500):
    """Test PSNR (dB on [0, 1] pixels, mean of per-image PSNR) of decode(mean), the judge's accuracy on those
    reconstructions (the ceiling for generated images), and PSNR when the latent gets posterior noise."""
    vae.eval()
    ps, psn, ok = [], [], []
    g = torch.Generator().manual_seed(123)
    for i in range(0, min(n, x_u8.shape[0]), bs):
        idx = torch.arange(i, min(i + bs, n, x_u8.shape[0]))
        xb = batch_images(x_u8, idx)
        m = vae.encode(xb)
        mean, _ = vae.split_moments(m)
        for z, acc in ((mean, ps), (vae.sample(m, g), psn)):
            rec = vae.decode(z)
            mse = ((rec.clamp(-1, 1) - xb) / 2).pow(2).flatten(1).mean(1).clamp_min(1e-10)
            acc.append(10 * torch.log10(1 / mse))
            if acc is ps:
                ok.append(clf(fmnist.to_grey01(rec)).argmax(1) == labels[idx])
    vae.train()
    return float(torch.cat(ps).mean()), float(torch.cat(psn).mean()), float(torch.cat(ok).float().mean())


@torch.no_grad()
def latent_stats(vae, x_u8, n=10000, bs=500, seed=0):
    """std of posterior samples (all channels together; the scale factor is 1/std), mean, and the mean posterior
    std relative to the spread of the means (how much noise the decoder is trained to tolerate)."""
    vae.eval()
    g = torch.Generator().manual_seed(seed)
    zs, means, stds = [], [], []
    for i in range(0, min(n, x_u8.shape[0]), bs):
        m = vae.encode(batch_images(x_u8, torch.arange(i, min(i + bs, n, x_u8.shape[0]))))
        mean, logvar = vae.split_moments(m)
        zs.append(vae.sample(m, g))
        means.append(mean)
        stds.append(torch.exp(0.5 * logvar))
    z, mean, std = torch.cat(zs), torch.cat(means), torch.cat(stds)
    per_ch = z.transpose(0, 1).reshape(z.shape[1], -1).std(1)
    return dict(sample_std=float(z.std()), sample_mean=float(z.mean()), mean_std=float(mean.std()),
                posterior_std_mean=float(std.mean()), per_channel_std=[round(float(v), 4) for v in per_ch])


def train_vae(run, x_train, x_test, y_test):
    a = run.args
    torch.manual_seed(a.seed)
    vae = make_vae(a)
    rec = run.rec.setdefault("vae", {})
    rec.update(hparams=vae.hparams, params=sum(p.numel() for p in vae.parameters()),
               params_encoder=sum(p.numel() for p in vae.encoder.parameters()),
               params_decoder=sum(p.numel() for p in vae.decoder.parameters()), batch=a.vae_batch, lr=a.vae_lr,
               kl_weight=a.kl_weight, budget_seconds=a.vae_seconds, explicit_steps=a.vae_steps,
               loss="mse + 0.5*l1 of decode(posterior sample) + kl_weight * KL(q || N(0, 1)) averaged per latent element")
    write_config(run, vae=dict(vae.hparams, stride=vae.stride, use_variational=True, groupnorm_groups=32,
                               groupnorm_eps=1e-6, latent_side=SIDE // vae.stride,
                               note="LDM AutoencoderKL: encoder attention at the last level (resolution "
                                    "param // 2^(levels-1)) and in the mid block; decoder attention only in "
                                    "the mid block; encode -> quant_conv -> (mean, logvar); decode = "
                                    "post_quant_conv -> decoder"))
    return fit_vae(run, vae, "vae", list(vae.parameters()), x_train, x_test, y_test, a.seed,
                   a.vae_lr, a.vae_seconds, a.vae_steps, a.vae_batch)


def train_decoder(run, vae, mom_train, x_train, x_test, y_test):
    """Fine-tunes post_quant_conv + decoder on posterior samples of the cached moments with the VAE's own
    reconstruction loss; the encoder (and so every latent, the scale factor and a trained MAR) is unchanged."""
    a = run.args
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    run.rec.setdefault("dec", {}).update(
        params=sum(p.numel() for p in params), batch=a.dec_batch, lr=a.dec_lr, budget_seconds=a.dec_seconds,
        explicit_steps=a.dec_steps, loss="mse + 0.5*l1 of decode(posterior sample of the cached moments); encoder frozen")
    vae = fit_vae(run, vae, "dec", params, x_train, x_test, y_test, a.seed + 7, a.dec_lr, a.dec_seconds,
                  a.dec_steps, a.dec_batch, mom_train)
    for p in params:
        p.requires_grad_(False)
    return vae


def fit_vae(run, vae, key, params, x_train, x_test, y_test, seed, peak_lr, seconds, steps, bs, mom_train=None):
    """The VAE stage (key "vae": every parameter, images encoded, loss with the KL term) and the decoder
    fine-tuning (key "dec": params of the decoder side, posterior samples of the cached moments mom_train,
    no KL term): AdamW, cosine LR over the budget, evals and resumable checkpoints as run.rec[key]."""
    a = run.args
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.0)
    st = dict(step=0, elapsed=0.0, losses=[], evals=[])
    sp = run.p(f"{key}_state.pt")
    if os.path.exists(sp):
        s = torch.load(sp)
        vae.load_state_dict(s["model"])
        opt.load_state_dict(s["opt"])
        st = s["st"]
        log(f"{key}: resuming at step {st['step']} ({st['elapsed']:.0f}s done)")
    N = x_train.shape[0]
    rec = run.rec[key]
    gen = torch.Generator().manual_seed(seed + st["step"])
    clf = load_judge(a.classifier)
    tuner = ThreadTuner(a.threads)
    vae.train()
    t_last, t_ck, t_start = time.time(), time.time(), time.time() - st["elapsed"]

    def progress():
        return st["step"] / steps if steps else st["elapsed"] / seconds

    def evaluate():
        psnr, psnr_noisy, jacc = vae_quality(vae, x_test, y_test, clf, a.eval_images)
        e = dict(step=st["step"], t=round(st["elapsed"], 1), test_psnr=psnr, test_psnr_posterior_sample=psnr_noisy,
                 judge_acc_recon=jacc)
        if mom_train is None:
            e.update(latent_stats(vae, x_train, 2000))
        st["evals"].append(e)
        log(f"{key} eval step {st['step']}: test PSNR {psnr:.2f} dB (posterior sample {psnr_noisy:.2f}), judge on "
            f"reconstructions {jacc:.3f}" + ("" if mom_train is not None else
                                             f"; latent std {e['sample_std']:.3f}, posterior std {e['posterior_std_mean']:.4f}"))

    def checkpoint(final=False):
        save_atomic({"model": official_state(vae)}, run.p("vae.pth"))
        save_atomic(dict(model=vae.state_dict(), opt=opt.state_dict(), st=st), sp)
        rec.update(steps=st["step"], seconds=st["elapsed"], images_per_second=st["step"] * bs / max(1e-9, st["elapsed"]),
                   epochs=st["step"] * bs / N, losses=st["losses"], evals=st["evals"], done=final,
                   thread_history=tuner.history)
        run.save_log()

    if mom_train is not None and not st["evals"]:
        evaluate()  # where the fine-tuning starts
    while progress() < 1.0:
        i = st["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(peak_lr, i, progress(), a.warmup_steps)
        idx = torch.randint(0, N, (bs,), generator=gen)
        x = batch_images(x_train, idx)
        mean, logvar = vae.split_moments(vae.encode(x) if mom_train is None else mom_train[idx])
        y = vae.decode(mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen))
        rec_loss = F.mse_loss(y, x) + 0.5 * F.l1_loss(y, x)
        kl = kl_per_element(mean, logvar).mean()
        loss = rec_loss + (a.kl_weight * kl if mom_train is None else 0.0)
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
                                     loss=round(float(loss), 5), rec=round(float(rec_loss), 5), kl=round(float(kl), 4),
                                     grad_norm=round(float(gn), 4)))
        if i % 50 == 0:
            log(f"{key} step {i} t={st['elapsed']:.0f}s p={progress():.3f} loss {float(loss):.4f} rec {float(rec_loss):.4f} "
                f"kl {float(kl):.3f} lr {opt.param_groups[0]['lr']:.2e} ({50 * bs / max(1e-9, now - t_last):.1f} img/s)")
            t_last = now
        if now - t_ck > a.ckpt_every:
            evaluate()
            checkpoint()
            t_ck = time.time()
            tuner.restart_window()
    evaluate()
    checkpoint(final=True)
    log(f"{key} done: {st['step']} steps ({st['step'] * bs / N:.2f} epochs) in {st['elapsed']:.0f}s")
    return vae.eval()


def set_scale_factor(run, vae, x_train):
    ls = latent_stats(vae, x_train, 10000)
    scale = float(f"{1.0 / ls['sample_std']:.4g}")
    run.rec["latents"] = dict(ls, scale_factor=scale, images=min(10000, x_train.shape[0]))
    run.save_log()
    write_config(run, vae=dict(scale_factor=scale, latent_sample_std=ls["sample_std"],
                               scale_note="1 / std of posterior samples of the first 10k training images "
                                          "(all channels); MAR sees latent * scale_factor, the image is "
                                          "vae.decode(tokens / scale_factor)"))
    log(f"latents: sample std {ls['sample_std']:.4f} (means {ls['mean_std']:.4f}, posterior std "
        f"{ls['posterior_std_mean']:.4f}) -> scale_factor {scale}")
    return scale


# ----------------------------------------------------------------------------------------------------------------
# Stage 2: MAR
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def cache_moments(vae, x_u8, bs=500):
    vae.eval()
    out = [vae.encode(batch_images(x_u8, torch.arange(i, min(i + bs, x_u8.shape[0]))))
           for i in range(0, x_u8.shape[0], bs)]
    return torch.cat(out)


def make_mar(a, num_sampling_steps="100"):
    return MAR(img_size=SIDE, vae_stride=2 ** (len(a.ch_mult) - 1), patch_size=1, encoder_embed_dim=a.width,
               encoder_depth=a.depth, encoder_num_heads=a.heads, decoder_embed_dim=a.width, decoder_depth=a.depth,
               decoder_num_heads=a.heads, mlp_ratio=4.0, vae_embed_dim=a.embed_dim, mask_ratio_min=a.mask_ratio_min,
               label_drop_prob=a.label_drop, class_num=10, attn_dropout=a.dropout, proj_dropout=a.dropout,
               buffer_size=a.buffer_size, diffloss_d=a.diffloss_d, diffloss_w=a.diffloss_w,
               num_sampling_steps=num_sampling_steps, diffusion_batch_mul=a.diffusion_batch_mul)


def mar_config(model):
    h = model.hparams
    return dict(h, seq_h=model.seq_h, seq_len=model.seq_len, token_embed_dim=model.token_embed_dim,
                head_dim_encoder=h["encoder_embed_dim"] // h["encoder_num_heads"],
                head_dim_decoder=h["decoder_embed_dim"] // h["decoder_num_heads"],
                norm_layer="LayerNorm eps 1e-6 (blocks, z_proj_ln, encoder_norm, decoder_norm, diffloss)",
                diffusion=dict(noise_schedule="cosine", diffusion_steps=1000, model_var_type="LEARNED_RANGE",
                               model_mean_type="EPSILON", clip_denoised=False, frequency_embedding_size=256,
                               max_period=10000),
                checkpoint_note="mar.pth = {'model': sd, 'model_ema': ema_sd}; sample with model_ema")


@torch.no_grad()
def mar_test_loss(model, lat_test, y_test, seed=7, bs=250):
    """Diffusion loss on fixed test latents (fixed orders, mask ratio, t and noise): comparable across evals."""
    was = model.training
    model.eval()
    rng, g = np.random.RandomState(seed), torch.Generator().manual_seed(seed)
    tot, mse, n = 0.0, 0.0, 0
    for i in range(0, lat_test.shape[0], bs):
        loss, d = model(lat_test[i:i + bs], y_test[i:i + bs], rng, g)
        tot += float(loss) * lat_test[i:i + bs].shape[0]
        mse += d["mse"] * lat_test[i:i + bs].shape[0]
        n += lat_test[i:i + bs].shape[0]
    model.train(was)
    return tot / n, mse / n


def ema_update(ema, model, decay):
    with torch.no_grad():
        for k, v in model.state_dict().items():
            ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay)


def train_mar(run, vae, scale, mom_train, y_train, mom_test, y_test):
    a = run.args
    torch.manual_seed(a.seed + 1)
    model = make_mar(a, str(a.probe_steps))
    decay, no_decay = [], []
    for n, p in model.named_parameters():  # as timm's add_weight_decay in the official code
        (no_decay if p.ndim == 1 or n.endswith(".bias") else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.mar_wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.mar_lr, betas=(0.9, 0.95))
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    st = dict(step=0, elapsed=0.0, losses=[], evals=[])
    sp = run.p("mar_state.pt")
    if os.path.exists(sp):
        s = torch.load(sp)
        model.load_state_dict(s["model"])
        ema = s["ema"]
        opt.load_state_dict(s["opt"])
        st = s["st"]
        log(f"mar: resuming at step {st['step']} ({st['elapsed']:.0f}s done)")
    N, bs = y_train.shape[0], a.mar_batch
    n_params = sum(p.numel() for p in model.parameters())
    n_diff = sum(p.numel() for p in model.diffloss.parameters())
    rec = run.rec.setdefault("mar", {})
    rec.update(hparams=model.hparams, params=n_params, params_diffloss=n_diff, batch=bs, lr=a.mar_lr,
               weight_decay=a.mar_wd, ema=a.ema, grad_clip=a.grad_clip, budget_seconds=a.mar_seconds,
               explicit_steps=a.mar_steps, scale_factor=scale, t_last_frac=a.t_last_frac,
               t_last_weight=a.t_last_weight,
               training="scaled posterior samples of cached moments; one mask ratio per batch ~ N(1, 0.25) "
                        "truncated to [mask_ratio_min, 1]; label dropout to fake_latent; diffusion_batch_mul "
                        "copies per token, head run on masked tokens only; loss MSE(eps) + VLB; t_last_frac of "
                        "the rows at t=999 with loss weight t_last_weight")
    write_config(run, mar=mar_config(model))
    gen = torch.Generator().manual_seed(a.seed + 1 + st["step"])
    rng = np.random.RandomState(a.seed + 1 + st["step"])
    clf = load_judge(a.classifier)
    lat_test = None
    model.train()
    tuner = ThreadTuner(a.threads)
    t_last, t_ck, t_start = time.time(), time.time(), time.time() - st["elapsed"]
    imgs_since = 0

    def progress():
        return st["step"] / a.mar_steps if a.mar_steps else st["elapsed"] / a.mar_seconds

    def ema_model():
        m = make_mar(a, str(a.probe_steps))
        m.load_state_dict(ema)
        return m.eval()

    def evaluate():
        nonlocal lat_test
        if lat_test is None:  # fixed posterior samples of the test set
            lat_test = vae.sample(mom_test, torch.Generator().manual_seed(5)) * scale
        em = ema_model()
        tl, tmse = mar_test_loss(em, lat_test, y_test)
        ee = em.eps_error(lat_test[:500], y_test[:500])
        ev = dict(step=st["step"], t=round(st["elapsed"], 1), test_loss_ema=tl, test_mse_ema=tmse,
                  eps_rms_err_ema={str(k): v for k, v in ee.items()})
        if a.probe_seeds > 0:
            imgs, labels = generate(em, vae, scale, range(a.probe_seeds), 8, 3.0, 1.0, a.probe_steps)
            acc, _, div = judge(clf, imgs, labels)
            ev.update(probe_judge_acc=acc, probe_same_class_rms=div,
                      probe_setting=f"8 iters, cfg 3 linear, temperature 1, {a.probe_steps} diffusion steps, "
                                    f"seeds 0..{a.probe_seeds - 1}")
        st["evals"].append(ev)
        log(f"mar eval step {st['step']}: test loss (EMA) {tl:.4f} (mse {tmse:.4f}), eps rms error at t=999 "
            f"{ee[999]:.4f} (t=990 {ee[990]:.4f}, t=500 {ee[500]:.4f})" +
            (f", probe judge accuracy {ev['probe_judge_acc']:.2f} (same-class rms {ev['probe_same_class_rms']:.3f})"
             if a.probe_seeds > 0 else ""))

    def checkpoint(final=False):
        save_atomic({"model": official_state(model), "model_ema": official_state(model, ema)}, run.p("mar.pth"))
        save_atomic(dict(model=model.state_dict(), ema=ema, opt=opt.state_dict(), st=st), sp)
        rec.update(steps=st["step"], seconds=st["elapsed"], images_per_second=st["step"] * bs / max(1e-9, st["elapsed"]),
                   epochs=st["step"] * bs / N, losses=st["losses"], evals=st["evals"], done=final,
                   thread_history=tuner.history)
        run.save_log()

    mean_all, logvar_all = vae.split_moments(mom_train)
    std_all = torch.exp(0.5 * logvar_all)
    while progress() < 1.0:
        i = st["step"]
        for g in opt.param_groups:
            g["lr"] = lr_at(a.mar_lr, i, progress(), a.warmup_steps)
        sel = torch.randint(0, N, (bs,), generator=gen)
        lat = (mean_all[sel] + std_all[sel] * torch.randn(mean_all[sel].shape, generator=gen)) * scale
        loss, d = model(lat, y_train[sel], rng, gen, masked_only=True, t_last_frac=a.t_last_frac,
                        t_last_weight=a.t_last_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        ema_update(ema, model, min(a.ema, (1 + i) / (10 + i)))
        tuner.step(bs)
        now = time.time()
        st["elapsed"] = now - t_start
        st["step"] = i + 1
        imgs_since += bs
        if i % 25 == 0:
            st["losses"].append(dict(step=i, t=round(st["elapsed"], 1), lr=opt.param_groups[0]["lr"], threads=tuner.cur,
                                     loss=round(float(loss), 5), mse=round(d["mse"], 5), vb=round(d["vb"], 5),
                                     mask_rate=round(d["mask_rate"], 3), grad_norm=round(float(gn), 4)))
        if i % 100 == 0:
            log(f"mar step {i} t={st['elapsed']:.0f}s p={progress():.3f} loss {float(loss):.4f} (mse {d['mse']:.4f} "
                f"vb {d['vb']:.4f}) lr {opt.param_groups[0]['lr']:.2e} ({imgs_since / max(1e-9, now - t_last):.1f} img/s)")
            t_last, imgs_since = now, 0
        if now - t_ck > a.ckpt_every:
            evaluate()
            checkpoint()
            log(f"mar checkpoint step {st['step']}; threads {tuner.cur} rates {tuner.rate}")
            t_ck = time.time()
            tuner.restart_window()
    evaluate()
    checkpoint(final=True)
    log(f"mar done: {st['step']} steps ({st['step'] * bs / N:.2f} epochs) in {st['elapsed']:.0f}s, {n_params} params "
        f"({n_diff} in the diffusion head)")
    return ema_model()


# ----------------------------------------------------------------------------------------------------------------
# Stage 3: judge evaluation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, vae, scale, seeds, num_iter, cfg, temperature, diff_steps, cfg_schedule="linear"):
    """Images (len(seeds)*10, 3, 32, 32) in [-1, 1] (unclamped) and labels (classes 0..9 per seed), sampled as one
    batch on one thread (tiny ops: threads only add overhead). Orders from np.random.RandomState(seed) per seed,
    Gaussian draws from torch.Generator(first seed)."""
    if model.diffloss.num_sampling_steps != str(diff_steps):
        model.diffloss.set_sampling_steps(str(diff_steps))
    seeds = [int(s) for s in seeds]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    lab = torch.arange(10).repeat(len(seeds))
    orders = torch.cat([model.sample_orders(10, np.random.RandomState(s)) for s in seeds])
    g = torch.Generator().manual_seed(seeds[0])
    tok = model.sample_tokens(lab.shape[0], num_iter, cfg, cfg_schedule, lab, temperature, orders=orders,
                              randn=lambda shape: torch.randn(shape, generator=g))
    imgs = torch.cat([vae.decode(tok[i:i + 100] / scale) for i in range(0, tok.shape[0], 100)])
    torch.set_num_threads(threads)
    return imgs, lab


def parse_setting(s):
    it, cfg, temp, steps = s.split(":")
    return dict(num_iter=int(it), cfg=float(cfg), temperature=float(temp), diffusion_steps=int(steps))


def run_eval(run, vae, model, scale):
    a = run.args
    clf = load_judge(a.classifier)
    settings = [parse_setting(s) for s in a.eval_settings.split(",")]
    results = []
    t0 = time.time()
    for s in settings:
        ts = time.time()
        imgs, labels = generate(model, vae, scale, range(10), s["num_iter"], s["cfg"], s["temperature"],
                                s["diffusion_steps"])
        acc, per, div = judge(clf, imgs, labels)
        results.append(dict(s, accuracy=acc, same_class_rms_median=div, per_class=per, seconds=time.time() - ts))
        log(f"eval {s}: judge accuracy {acc:.2f} (same-class rms {div:.3f}) in {time.time() - ts:.0f}s")
    # Best accuracy; among settings within one sample of it the cheapest (iterations x diffusion steps), then the
    # more diverse.
    best_acc = max(r["accuracy"] for r in results)
    best = min((r for r in results if r["accuracy"] >= best_acc - 0.011),
               key=lambda r: (r["num_iter"] * r["diffusion_steps"], -r["same_class_rms_median"]))
    bs = (best["num_iter"], best["cfg"], best["temperature"], best["diffusion_steps"])
    imgs, labels = generate(model, vae, scale, range(10), *bs)
    sdir = run.p("samples")
    os.makedirs(sdir, exist_ok=True)
    for n in range(imgs.shape[0]):
        save_png(imgs[n], os.path.join(sdir, f"class{int(labels[n])}_seed{n // 10}.png"))
    grid = imgs.view(10, 10, *imgs.shape[1:]).permute(1, 0, 2, 3, 4)  # rows = classes, columns = seeds
    grid = grid.permute(2, 0, 3, 1, 4).reshape(3, 10 * imgs.shape[-2], 10 * imgs.shape[-1])
    save_png(grid, run.p("grid.png"))
    imgs2, labels2 = generate(model, vae, scale, range(100, 110), *bs)
    acc2, per2, div2 = judge(clf, imgs2, labels2)
    default = dict(num_iter=best["num_iter"], cfg=best["cfg"], cfg_schedule="linear", temperature=best["temperature"],
                   num_sampling_steps=best["diffusion_steps"])
    out = dict(seeds="0..9 (classes 0..9 per seed, all in one batch; orders np.random.RandomState(seed) per "
                     "seed, noise torch.Generator(first seed))", cfg_schedule="linear: 1 + (cfg - 1) * (L - mask_len) / L",
               default=dict(default, accuracy=best["accuracy"], per_class=best["per_class"],
                            same_class_rms_median=best["same_class_rms_median"]),
               recheck_seeds_100_109=dict(accuracy=acc2, per_class=per2, same_class_rms_median=div2),
               grid=results, classifier=os.path.abspath(a.classifier), seconds=time.time() - t0)
    with open(run.p("eval.json"), "w") as f:
        json.dump(out, f, indent=1)
    write_config(run, sampling=default, mar=dict(num_sampling_steps=str(best["diffusion_steps"])))
    run.rec["eval"] = dict(default=out["default"], recheck_accuracy=acc2)
    run.save_log()
    log(f"eval: default {default}: accuracy {best['accuracy']:.2f} (re-check on seeds 100-109: {acc2:.2f})")


# ----------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(ap, "vae,mar,eval", eval_images_help="test images for the VAE and MAR test metrics")
    # VAE
    ap.add_argument("--embed-dim", type=int, default=16)
    ap.add_argument("--ch", type=int, default=32)
    ap.add_argument("--ch-mult", type=ints, default=[1, 1, 2, 4], help="4 levels: stride 8, 32x32 -> 4x4 tokens")
    ap.add_argument("--num-res-blocks", type=int, default=1)
    ap.add_argument("--kl-weight", type=float, default=5e-4, help="per latent element, against per-pixel recon")
    ap.add_argument("--vae-batch", type=int, default=64)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--vae-seconds", type=float, default=1200)
    ap.add_argument("--vae-steps", type=int, default=0)
    # decoder fine-tuning (stage dec, not in the default stages)
    ap.add_argument("--dec-batch", type=int, default=64)
    ap.add_argument("--dec-lr", type=float, default=3e-4)
    ap.add_argument("--dec-seconds", type=float, default=1500)
    ap.add_argument("--dec-steps", type=int, default=0)
    # MAR
    ap.add_argument("--width", type=int, default=192, help="encoder and decoder width")
    ap.add_argument("--depth", type=int, default=3, help="encoder and decoder depth (each)")
    ap.add_argument("--heads", type=int, default=3, help="head_dim 64 as the official models")
    ap.add_argument("--buffer-size", type=int, default=8)
    ap.add_argument("--diffloss-w", type=int, default=256)
    ap.add_argument("--diffloss-d", type=int, default=3)
    ap.add_argument("--diffusion-batch-mul", type=int, default=4)
    ap.add_argument("--mask-ratio-min", type=float, default=0.7)
    ap.add_argument("--label-drop", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.0, help="attention and projection dropout (official 0.1)")
    ap.add_argument("--t-last-frac", type=float, default=0.2,
                    help="fraction of diffusion rows trained at t=999 (0 = official uniform t; see DiffLoss.forward)")
    ap.add_argument("--t-last-weight", type=float, default=30.0, help="loss weight of those rows")
    ap.add_argument("--mar-batch", type=int, default=64)
    ap.add_argument("--mar-lr", type=float, default=8e-4)
    ap.add_argument("--mar-wd", type=float, default=0.02)
    ap.add_argument("--grad-clip", type=float, default=3.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--mar-seconds", type=float, default=2700)
    ap.add_argument("--mar-steps", type=int, default=0)
    ap.add_argument("--probe-seeds", type=int, default=2, help="seeds x 10 classes sampled and judged at each eval")
    ap.add_argument("--probe-steps", type=int, default=250, help="diffusion steps of the probe samples")
    # eval
    ap.add_argument("--classifier", default=os.path.join(HERE, "classifier.pth"))
    ap.add_argument("--eval-settings", default="16:1.5:1.0:250,16:3.0:1.0:250,16:4.5:1.0:250,16:3.0:0.9:250,"
                    "8:3.0:1.0:250,16:3.0:1.0:100,16:3.0:1.0:500",
                    help="comma-separated num_iter:cfg:temperature:diffusion_steps (linear CFG schedule)")
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
        vae = vae_from_state(torch.load(run.p("vae.pth"), map_location="cpu")["model"],
                             dict(resolution=read_config(run).get("vae", {}).get("resolution", SIDE)))
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    scale = read_config(run).get("vae", {}).get("scale_factor")
    if scale is None or run.rec.get("latents", {}).get("vae_steps") != run.rec.get("vae", {}).get("steps"):
        scale = set_scale_factor(run, vae, xu)
        run.rec["latents"]["vae_steps"] = run.rec.get("vae", {}).get("steps")
        run.save_log()

    def moments():
        mp = run.p("moments.pt")
        if os.path.exists(mp) and run.rec.get("moments", {}).get("vae_steps") == run.rec.get("vae", {}).get("steps"):
            return torch.load(mp)
        t0 = time.time()
        mom, mom_t = cache_moments(vae, xu), cache_moments(vae, xtu)
        save_atomic((mom, mom_t), mp)
        run.rec["moments"] = dict(seconds=time.time() - t0, vae_steps=run.rec.get("vae", {}).get("steps"),
                                  train=int(mom.shape[0]), test=int(mom_t.shape[0]))
        run.save_log()
        log(f"cached posterior moments of {mom.shape[0] + mom_t.shape[0]} images in {time.time() - t0:.0f}s")
        return mom, mom_t

    if "dec" in stages and not run.rec.get("dec", {}).get("done"):
        vae = train_decoder(run, vae, moments()[0], xu, xtu, y_test)
    model = None
    if "mar" in stages and not run.rec.get("mar", {}).get("done"):
        mom, mom_t = moments()
        model = train_mar(run, vae, scale, mom, y_train, mom_t, y_test)
    if "eval" in stages:
        if model is None:
            ck = torch.load(run.p("mar.pth"), map_location="cpu")
            model = mar_from_state(ck["model_ema"], read_config(run)["mar"])
        run_eval(run, vae, model.eval(), scale)
    run.save_log()
    log(f"all done in {time.time() - run.t0:.0f}s")


if __name__ == "__main__":
    main()
