"""Checks rq_model.py against the official-code goldens of /work/shared/fixtures/rq-tiny: builds RQVAE and
RQTransformer from its stage1/stage2 config.yaml, loads stage1.pth / stage2.pth with strict=True, and compares with
golden.safetensors (max |diff| / max |golden| for floats, exact equality for ids).

    /usr/bin/python3 weights/train/check_rq_model.py [fixture_dir]
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rq_model import rqtransformer_from_config, rqvae_from_config  # noqa: E402

DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=DT[v["dtype"]]).reshape(v["shape"]).copy())
    return out


def main():
    fx = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/fixtures/rq-tiny"
    torch.set_num_threads(1)
    c1 = yaml.safe_load(open(os.path.join(fx, "stage1/config.yaml")))
    c2 = yaml.safe_load(open(os.path.join(fx, "stage2/config.yaml")))
    vae = rqvae_from_config(c1["arch"])
    tr = rqtransformer_from_config(c2["arch"])
    vae.load_state_dict(torch.load(os.path.join(fx, "stage1.pth"), map_location="cpu"), strict=True)
    tr.load_state_dict(torch.load(os.path.join(fx, "stage2.pth"), map_location="cpu"), strict=True)
    # the release layout too
    vae2 = rqvae_from_config(c1["arch"])
    vae2.load_state_dict(torch.load(os.path.join(fx, "stage1/model.pt"), map_location="cpu")["state_dict"], strict=True)
    tr2 = rqtransformer_from_config(c2["arch"])
    tr2.load_state_dict(torch.load(os.path.join(fx, "stage2/model.pt"), map_location="cpu")["state_dict"], strict=True)
    vae.eval(), tr.eval()
    g = read_safetensors(os.path.join(fx, "golden.safetensors"))
    res, ok = {}, True

    def rel(name, got):
        want = g[name]
        e = float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))
        res[name] = e
        return e

    def exact(name, got):
        nonlocal ok
        eq = bool(torch.equal(got.long(), g[name]))
        res[name] = "exact" if eq else f"MISMATCH ({int((got.long() != g[name]).sum())} of {got.numel()})"
        ok &= eq

    with torch.no_grad():
        x = g["vae.x"]
        rel("vae.encoder_out", vae.encoder(x))
        z = vae.encode(x)
        rel("vae.z_e", z)
        cums, codes = vae.quantizer.quantize(z)
        exact("vae.codes", codes)
        for d in range(4):
            rel(f"vae.quant_cumsum.d{d}", cums[d])
        codes = g["vae.codes"]
        rel("vae.code_emb_with_depth", vae.get_code_emb_with_depth(codes))
        for d in range(4):
            rel(f"vae.partial_add.d{d}", vae.decode_partial_code(codes, d, "add"))
        rel("vae.partial_select.d1", vae.decode_partial_code(codes, 1, "select"))
        rel("vae.decode_code", vae.decode_code(codes))
        rel("vae.forward_out", vae(x)[0])
        rel("vae.commitment_loss", vae.quantizer(z)[1].reshape(1))
        cb = vae.quantizer.codebook.weight
        logits, inner = tr(g["tf.codes"], cb, g["tf.cond"], return_inner=True)
        for k in ("body_in", "body_out", "head_in", "head_out"):
            rel("tf." + k, inner[k])
        rel("tf.logits", logits)
        ar = tr.sample(cb, g["ar.cond"], temperature=1.0, top_k=1, top_p=None, gen=torch.Generator().manual_seed(0))
        exact("ar.codes", ar)
        ar_greedy = tr.sample(cb, g["ar.cond"], greedy=True)
        res["ar.codes (argmax)"] = "exact" if torch.equal(ar_greedy, g["ar.codes"]) else "MISMATCH"
        ok &= torch.equal(ar_greedy, g["ar.codes"])
        rel("ar.tf_logits", tr(g["ar.codes"], cb, g["ar.cond"]).reshape(2, -1, tr.V))
        rel("ar.img", torch.cat([vae.decode_code(g["ar.codes"][i:i + 1]) for i in range(2)]))
        sd = tr2.state_dict()
        res["release layout (stage*/model.pt) equals *.pth"] = all(
            torch.equal(sd[k], v) for k, v in tr.state_dict().items()) and all(
            torch.equal(vae2.state_dict()[k], v) for k, v in vae.state_dict().items())
    worst = max(v for v in res.values() if isinstance(v, float))
    for k, v in res.items():
        print(f"{k:50s} {v:.3e}" if isinstance(v, float) else f"{k:50s} {v}")
    print(f"max relative error {worst:.3e}; ids {'all exact' if ok else 'MISMATCH'}")
    ok &= worst < 1e-4
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
