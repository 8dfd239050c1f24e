"""What the demo models' training scripts share (train_flexvar.py, train_mar.py, train_rq.py): logging, argument
helpers, the learning-rate schedule, the thread tuner, checkpoint and run-log writing, the judge (the separate
classifier) and the official state-dict form."""

import collections
import math
import os
import json
import time

import torch
import torch.nn.functional as F

import fmnist
from classifier import Classifier


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def ints(s):
    return [int(v) for v in s.split(",")] if s else []


def floats(s):
    return [float(v) for v in s.split(",")] if s else []


def lr_at(peak, step, progress, warmup_steps, floor=0.05):
    w = min(1.0, (step + 1) / max(1, warmup_steps))
    return peak * w * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class ThreadTuner:
    """Chooses the torch thread count (1..max) by measured throughput. On this 2-core machine, shared with other
    work, 2 OpenMP threads are ~1.8x faster when the machine is idle but several times SLOWER than 1 thread when
    another process holds a core (the threads wait for each other at every barrier). Every `window` steps the
    rate of the current setting is recorded; the best known setting is used, and every `explore` windows the
    other setting is re-measured (contention changes)."""

    def __init__(self, max_threads, window=20, explore=6):
        self.opts = list(range(1, max_threads + 1)) if max_threads > 1 else [1]
        self.rate = {n: None for n in self.opts}
        self.window, self.explore = window, explore
        self.cur, self.n_win, self.t0, self.imgs, self.steps = max_threads, 0, time.time(), 0, 0
        self.history = []
        torch.set_num_threads(self.cur)

    def step(self, images):
        self.imgs += images
        self.steps += 1
        if self.steps < self.window:
            return
        now = time.time()
        r = self.imgs / max(1e-9, now - self.t0)
        self.rate[self.cur] = r if self.rate[self.cur] is None else 0.5 * self.rate[self.cur] + 0.5 * r
        self.n_win += 1
        unknown = [n for n in self.opts if self.rate[n] is None]
        if unknown:
            nxt = unknown[0]
        elif self.n_win % self.explore == 0:
            nxt = min((n for n in self.opts if n != self.cur), key=lambda n: self.rate[n])
        else:
            nxt = max(self.opts, key=lambda n: self.rate[n])
        self.history.append([round(now, 1), self.cur, round(r, 2)])
        if nxt != self.cur:
            torch.set_num_threads(nxt)
            self.cur = nxt
        self.t0, self.imgs, self.steps = time.time(), 0, 0

    def restart_window(self):
        """Call after work that is not a training step (checkpoints), so that it does not count."""
        self.t0, self.imgs, self.steps = time.time(), 0, 0


def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Run:
    def __init__(self, args):
        self.args, self.out = args, args.out
        self.path_log = os.path.join(args.out, "train_log.json")
        if os.path.exists(self.path_log):
            with open(self.path_log) as f:
                self.rec = json.load(f)
        else:
            self.rec = {}
        self.rec.setdefault("runs", []).append(dict(args=vars(args), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                                                    torch=torch.__version__, threads=torch.get_num_threads(),
                                                    cpus=os.cpu_count()))
        self.t0 = time.time()

    def save_log(self):
        self.rec["runs"][-1]["seconds"] = time.time() - self.t0
        tmp = self.path_log + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.rec, f, indent=1)
        os.replace(tmp, self.path_log)

    def p(self, name):
        return os.path.join(self.out, name)


def load_judge(path):
    clf = Classifier()
    clf.load_state_dict(torch.load(path, map_location="cpu"))
    return clf.eval()


@torch.no_grad()
def judge(clf, imgs, labels):
    g = fmnist.to_grey01(imgs)
    g = torch.round(g * 255) / 255  # as a PNG would store it
    if g.shape[-1] != 32:
        g = F.interpolate(g, size=(32, 32), mode="bilinear", align_corners=False)
    pred = clf(g).argmax(1)
    ok = pred == labels
    per_class = {fmnist.CLASS_NAMES[c]: float(ok[labels == c].float().mean()) for c in range(10)}
    # diversity: median RMS distance between samples of one class ([0, 1] grey pixels)
    d = []
    for c in range(10):
        q = g[labels == c].flatten(1)
        if q.shape[0] > 1:
            m = torch.cdist(q, q) / q.shape[1] ** 0.5
            d.append(m[~torch.eye(q.shape[0], dtype=torch.bool)])
    return float(ok.float().mean()), per_class, float(torch.cat(d).median()) if d else 0.0


def save_png(img, path):
    from PIL import Image
    a = ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(a, mode="RGB").save(path)


def batch_images(x_u8, idx):
    """uint8 [N, 28, 28] rows idx -> float [B, 3, 32, 32] in [-1, 1] (kept as uint8 to save memory)."""
    return fmnist.to_model_space(x_u8[idx.numpy()])


def official_state(model, values=None):
    """model.state_dict() as the official files hold it: an OrderedDict with its _metadata (pickled with the
    globals collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.FloatStorage only), values cloned
    (contiguous); `values` (a name -> tensor dict, e.g. the EMA) replaces the model's own."""
    sd = model.state_dict()
    out = collections.OrderedDict((k, (values[k] if values is not None else v).detach().clone()) for k, v in sd.items())
    out._metadata = getattr(sd, "_metadata", None)
    return out


def add_common_args(ap, stages, eval_images_help=None, ckpt_every=300.0):
    """The arguments every training script takes: output, data, stages, seed, smoke-test limit, threads,
    checkpoint period and warm-up (and the test-image count of the stages' metrics, where given)."""
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default=None)
    ap.add_argument("--stages", default=stages)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke tests)")
    ap.add_argument("--threads", type=int, default=2, help="at most this many torch threads (chosen by throughput)")
    ap.add_argument("--ckpt-every", type=float, default=ckpt_every, help="seconds between checkpoints (each with the stage's test metrics where it has them)")
    ap.add_argument("--warmup-steps", type=int, default=100)
    if eval_images_help:
        ap.add_argument("--eval-images", type=int, default=1000, help=eval_images_help)
