"""Regenerates the CPython-written pickles under testdata/pickles (no torch needed).

Fake `torch` / `torch._utils` modules stand in for the real ones so that CPython's own C pickler emits exactly
the opcodes torch.save would (torch.save uses that pickler with a persistent_id hook), for every protocol 2-5.
The evil_* pickles are what a malicious checkpoint would contain. Run from this directory:

    python3 gen_pickles.py
"""
import collections
import io
import os
import pickle
import sys
import types

torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
torch._utils = utils
sys.modules["torch"] = torch
sys.modules["torch._utils"] = utils


def storage_class(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch, name, cls)
    return cls


FloatStorage = storage_class("FloatStorage")
LongStorage = storage_class("LongStorage")
HalfStorage = storage_class("HalfStorage")


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce_ex__(self, protocol):
        return (_rebuild_tensor_v2, self.args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def state_dict():
    s0 = Storage(FloatStorage, "0", 6)  # values 0..5 written by the Go test
    sd = collections.OrderedDict()
    sd["w"] = Tensor(s0, 0, (2, 3), (3, 1))
    sd["w_t"] = Tensor(s0, 0, (3, 2), (1, 3))  # transposed view of the same storage
    sd["ids"] = Tensor(Storage(LongStorage, "1", 4), 1, (3,), (1,))
    sd["half"] = Tensor(Storage(HalfStorage, "2", 1), 0, (), ())
    sd["num_steps"] = 7  # a non-tensor value, skipped by the loader
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("w", {"version": 2})])
    return sd


class Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


def main():
    for proto in (2, 3, 4, 5):
        buf = io.BytesIO()
        TorchLikePickler(buf, protocol=proto).dump(state_dict())
        with open(f"pickles/state_p{proto}.pkl", "wb") as f:
            f.write(buf.getvalue())
    marker = "/nonexistent-webvar-loader-test/pwned"
    for proto in (2, 4):
        evil = {"w": Evil(os.system, "touch " + marker)}
        with open(f"pickles/evil_system_p{proto}.pkl", "wb") as f:
            f.write(pickle.dumps(evil, protocol=proto))
        with open(f"pickles/evil_eval_p{proto}.pkl", "wb") as f:
            f.write(pickle.dumps(Evil(eval, "__import__('os').system('touch " + marker + "')"), protocol=proto))


main()
