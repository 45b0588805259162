#!/usr/bin/env python3
"""Reads vae-mpi's outputs with the clients people use for them: numpy for
.npy, the `tensorboard` package's event reader, the `safetensors` package,
and PyTorch when it is installed. Each command prints "ok: ..." or raises."""
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import numpy as np


def npy(latents, labels, n, z):
    a = np.load(latents)
    assert a.dtype == np.float32 and a.shape == (n, z), (a.dtype, a.shape)
    assert np.isfinite(a).all()
    assert a.std(axis=0).min() > 1e-3, "latent means are not all the same"
    if labels:
        l = np.load(labels)
        assert l.dtype == np.int64 and l.shape == (n,), (l.dtype, l.shape)
    print(f"ok: {latents} {a.shape} {a.dtype}, mean {a.mean(axis=0)}")


def same_npy(a, b):
    x, y = np.load(a), np.load(b)
    assert x.shape == y.shape and np.array_equal(x, y), "arrays differ"
    print(f"ok: {a} == {b}")


def tensorboard(run):
    """Scalars equal metrics.jsonl's (to float32 precision) at the same steps;
    images decode to the PNG files' sizes."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(run, size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    tags = ea.Tags()
    metrics = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    train = [m for m in metrics if m["type"] == "train"]
    evals = [m for m in metrics if m["type"] == "eval"]
    pairs = [("train/loss", train, "loss"), ("train/reconstruction", train, "reconstruction"),
             ("train/kl", train, "kl"), ("train/learning_rate", train, "learning_rate"),
             ("train/samples_per_s", train, "samples_per_s"), ("test/loss", evals, "test_loss"),
             ("test/bits_per_dim", evals, "test_bits_per_dim"), ("test/kl", evals, "test_kl"),
             ("test/reconstruction", evals, "test_reconstruction")]
    for tag, entries, key in pairs:
        if key == "test_bits_per_dim" and not any(key in m for m in entries):
            # Only where bits per dimension are a code length (discrete likelihoods); then in both.
            assert tag not in tags["scalars"], f"{tag} in TensorBoard but not in metrics.jsonl"
            continue
        assert tag in tags["scalars"], f"missing scalar {tag}: {tags['scalars']}"
        events = ea.Scalars(tag)
        assert [e.step for e in events] == [m["step"] for m in entries], (tag, [e.step for e in events])
        for e, m in zip(events, entries):
            assert math.isclose(e.value, m[key], rel_tol=1e-6, abs_tol=1e-6), (tag, e.value, m[key])
    for tag in ("samples", "reconstructions"):
        assert tag in tags["images"], tags["images"]
        images = ea.Images(tag)
        assert [i.step for i in images] == [m["step"] for m in evals]
        png = images[-1].encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = struct.unpack(">II", png[16:24])
        assert (w, h) == (images[-1].width, images[-1].height)
    print(f"ok: {len(tags['scalars'])} scalar tags, {len(tags['images'])} image tags, "
          f"{len(train)} train and {len(evals)} eval steps match metrics.jsonl")


def safetensors_matches_inspect(path, inspect_json):
    """The safetensors package reads the file; names, shapes and values
    agree with what `vae-mpi inspect --json` reports."""
    from safetensors.numpy import load_file
    tensors = load_file(path)
    report = json.loads(open(inspect_json).read())
    listed = {t["name"]: t for t in report["tensors"]}
    assert set(tensors) == set(listed), set(tensors) ^ set(listed)
    for name, array in tensors.items():
        t = listed[name]
        assert array.dtype == np.float32 and list(array.shape) == t["shape"], (name, array.shape, t["shape"])
        crc = "crc32:%08x" % zlib.crc32(array.astype("<f4").tobytes())
        assert crc == t["checksum"], (name, crc, t["checksum"])
        assert math.isclose(float(array.astype(np.float64).sum()), t["sum"], rel_tol=1e-9, abs_tol=1e-9)
        # JSON carries the shortest decimal that rounds to the float32 value.
        assert array.min() == np.float32(t["min"]) and array.max() == np.float32(t["max"]), (name, t)
    print(f"ok: {len(tensors)} tensors read by safetensors match vae-mpi inspect")


def torch_load(path, hidden, latent, size):
    """Loads the parameters into the PyTorch example's VAE (skipped without torch)."""
    try:
        import torch
        from torch import nn
    except ImportError:
        print("ok: skipped (PyTorch not installed)")
        return
    from safetensors.torch import load_file

    class VAE(nn.Module):  # pytorch/examples vae/main.py, sizes as options
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(size, hidden), nn.Linear(hidden, latent), nn.Linear(hidden, latent)
            self.fc3, self.fc4 = nn.Linear(latent, hidden), nn.Linear(hidden, size)

    state = {k: v for k, v in load_file(path).items() if not k.startswith("optimizer.")}
    VAE().load_state_dict(state, strict=True)
    print(f"ok: load_state_dict(strict=True) into the PyTorch example's VAE ({len(state)} tensors)")


def safetensors_dtypes(path):
    """Every tensor is float32 (bf16 runs keep fp32 parameters and moments) and finite."""
    import numpy as np
    from safetensors.numpy import load_file
    tensors = load_file(path)
    for name, array in tensors.items():
        assert array.dtype == np.float32, (name, array.dtype)
        assert np.isfinite(array).all(), name
    print(f"ok: {len(tensors)} float32 tensors in {path}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "npy":
        npy(args[0], args[1] if args[1] != "-" else None, int(args[2]), int(args[3]))
    elif cmd == "same-npy":
        same_npy(args[0], args[1])
    elif cmd == "tensorboard":
        tensorboard(args[0])
    elif cmd == "safetensors":
        safetensors_matches_inspect(args[0], args[1])
    elif cmd == "safetensors-dtypes":
        safetensors_dtypes(args[0])
    elif cmd == "torch-load":
        torch_load(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown command {cmd}")
