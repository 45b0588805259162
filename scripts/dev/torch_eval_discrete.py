#!/usr/bin/env python3
"""An independent PyTorch evaluation of a vae-mpi conv VAE with a discrete
likelihood: the test set's −ELBO and its exact bits per sub-pixel, to check
against `vae-mpi evaluate` (they must agree within 1e-4 relative).

    python3 scripts/dev/torch_eval_discrete.py runs/NAME [--images t10k-images-idx3-ubyte.gz] [--json]

It reads the checkpoint (safetensors + its JSON sidecar) with the
`safetensors` package, builds the conv VAE from PyTorch's own modules with
vae-mpi's layout (Conv2d 3×3 stride 2 stages, flatten in (C, H, W) order,
Linear to μ and log σ², the mirrored ConvTranspose2d decoder with its
auxiliary head), draws the evaluation noise with its own implementation of
Philox4x32-10 and Box–Muller (vae-mpi's stream (seed, evaluation-noise),
block i·Z + j for image i, dimension j), and computes the likelihood with
its own formulas in float64:

- discretized logistic: log(σ(a) − σ(b)) as log σ(a) + log(−expm1(log σ(b)
  − log σ(a))) on the side of the logistic where both are ≤ 0; end bins
  log σ(a) and log σ(−b); log-scales clamped to [−9, 7]; mixtures by
  logsumexp over log_softmax weights;
- beta-binomial: torch.lgamma, α and β = exp(clamp(·, −10, 15)).

Nothing here calls vae-mpi's code.
"""
import argparse
import gzip
import json
import math
import os
import struct

import numpy as np
import torch
from safetensors.torch import load_file

torch.set_grad_enabled(False)


def checkpoint_files(path):
    if os.path.isdir(path):
        path = os.path.join(path, "checkpoints")
        with open(os.path.join(path, "latest")) as f:
            stem = os.path.join(path, f.read().strip())
        return stem + ".safetensors", stem + ".json"
    stem = path[: path.rindex(".")]
    return stem + ".safetensors", stem + ".json"


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


# Philox4x32-10 (Salmon et al. 2011), as vae-mpi's TensorCore/RNG.swift keys it.
M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def philox(counters, key):
    c = [x.astype(np.uint64) for x in counters]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    mask = np.uint64(0xFFFFFFFF)
    for r in range(10):
        if r > 0:
            k0 = (k0 + np.uint64(W0)) & mask
            k1 = (k1 + np.uint64(W1)) & mask
        p0 = np.uint64(M0) * c[0]
        p1 = np.uint64(M1) * c[2]
        c = [((p1 >> np.uint64(32)) ^ c[1] ^ k0) & mask, p1 & mask,
             ((p0 >> np.uint64(32)) ^ c[3] ^ k1) & mask, p0 & mask]
    return c


def normals(seed, domain, count):
    """Elements 0…count−1 of the stream (seed, domain, 0, 0): element i uses words 2i and 2i+1."""
    words_needed = 2 * count
    blocks = (words_needed + 3) // 4
    index = np.arange(blocks, dtype=np.uint64)
    zeros = np.zeros(blocks, dtype=np.uint64)
    out = philox([index, np.full(blocks, domain, dtype=np.uint64), zeros, zeros],
                 (seed & 0xFFFFFFFF, seed >> 32))
    words = np.stack(out, axis=1).reshape(-1)[:words_needed].astype(np.float64)
    u1 = (words[0::2] + 0.5) / 4294967296.0
    u2 = (words[1::2] + 0.5) / 4294967296.0
    return (np.sqrt(-2 * np.log(u1)) * np.cos(2 * math.pi * u2)).astype(np.float32)


class ConvVAE(torch.nn.Module):
    """vae-mpi's conv family, from PyTorch's modules."""

    def __init__(self, state, channels, stages, latent, aux_name):
        super().__init__()
        self.stages = stages
        self.enc = torch.nn.ModuleList()
        self.dec = torch.nn.ModuleList()
        self.state = state
        self.aux_name = aux_name

    def forward_encoder(self, x):
        s = self.state
        h = x
        for i in range(1, self.stages + 1):
            h = torch.relu(torch.nn.functional.conv2d(h, s[f"enc.conv{i}.weight"], s[f"enc.conv{i}.bias"], stride=2, padding=1))
        flat = h.flatten(1)
        mu = torch.nn.functional.linear(flat, s["enc.fc_mu.weight"], s["enc.fc_mu.bias"])
        logvar = torch.nn.functional.linear(flat, s["enc.fc_logvar.weight"], s["enc.fc_logvar.bias"])
        return mu, logvar, h.shape[1:]

    def forward_decoder(self, z, top_shape):
        s = self.state
        h = torch.relu(torch.nn.functional.linear(z, s["dec.fc.weight"], s["dec.fc.bias"])).view(-1, *top_shape)
        n = self.stages
        for i in range(1, n):
            h = torch.relu(torch.nn.functional.conv_transpose2d(h, s[f"dec.deconv{i}.weight"], s[f"dec.deconv{i}.bias"],
                                                                stride=2, padding=1, output_padding=1))
        location = torch.nn.functional.conv_transpose2d(h, s[f"dec.deconv{n}.weight"], s[f"dec.deconv{n}.bias"],
                                                        stride=2, padding=1, output_padding=1)
        auxiliary = torch.nn.functional.conv_transpose2d(h, s[f"dec.deconv{n}_{self.aux_name}.weight"],
                                                         s[f"dec.deconv{n}_{self.aux_name}.bias"],
                                                         stride=2, padding=1, output_padding=1)
        return location, auxiliary


def log_diff_sigmoid(a, b):
    mirror = (a + b) > 0
    a2, b2 = torch.where(mirror, -b, a), torch.where(mirror, -a, b)
    la, lb = torch.nn.functional.logsigmoid(a2), torch.nn.functional.logsigmoid(b2)
    return la + torch.log(-torch.expm1(lb - la))


def logistic_log_probability(x, planes, levels, mixtures):
    """x (B, D) levels; planes (P, B, D). log p per element (B, D)."""
    n, k = mixtures, levels
    h = 0.5 / (k - 1)
    c = (x / (k - 1)).unsqueeze(0)
    locations = planes[0:n]
    log_scales = torch.clamp(planes[n:2 * n], -9.0, 7.0)
    log_weights = torch.log_softmax(planes[2 * n:3 * n], dim=0) if n > 1 else torch.zeros_like(locations)
    inv = torch.exp(-log_scales)
    a = (c + h - locations) * inv
    b = (c - h - locations) * inv
    first = (x == 0).unsqueeze(0).expand_as(a)
    last = (x == k - 1).unsqueeze(0).expand_as(a)
    interior = log_diff_sigmoid(torch.where(first | last, a + 1, a), torch.where(first | last, a - 1, b))
    logp = torch.where(first, torch.nn.functional.logsigmoid(a), torch.where(last, torch.nn.functional.logsigmoid(-b), interior))
    return torch.logsumexp(log_weights + logp, dim=0)


def beta_binomial_log_probability(x, planes, levels):
    n = levels - 1
    alpha = torch.exp(torch.clamp(planes[0], -10.0, 15.0))
    beta = torch.exp(torch.clamp(planes[1], -10.0, 15.0))
    lg = torch.lgamma
    return (lg(torch.tensor(n + 1.0, dtype=x.dtype)) - lg(x + 1) - lg(n - x + 1) + lg(x + alpha) + lg(n - x + beta)
            - lg(n + alpha + beta) - lg(alpha) - lg(beta) + lg(alpha + beta))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--images", default="/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tensors, sidecar_path = checkpoint_files(args.checkpoint)
    sidecar = json.load(open(sidecar_path))
    config = sidecar["configuration"]
    arch = config["architecture"]
    assert arch["family"] == "conv", "a conv VAE"
    likelihood = arch["likelihood"]
    kind, levels = likelihood["type"], likelihood["levels"]
    mixtures = likelihood.get("mixtures", 1)
    aux = {"discretized-logistic": "logscale" if mixtures == 1 else "mixture", "beta-binomial": "logbeta"}[kind]
    state = {k: v.to(torch.float32) for k, v in load_file(tensors).items() if not k.startswith("optimizer.")}
    stages = len(arch["channels"])
    latent = arch["latent_size"]
    model = ConvVAE(state, arch["channels"], stages, latent, aux)
    images = read_idx(args.images)
    n = images.shape[0]
    x_levels = torch.from_numpy(images.reshape(n, 1, images.shape[1], images.shape[2]).astype(np.float64))
    noise = torch.from_numpy(normals(config["seed"], 5, n * latent).reshape(n, latent))
    total_rec, total_kl = 0.0, 0.0
    for start in range(0, n, args.batch):
        xb = x_levels[start:start + args.batch]
        b = xb.shape[0]
        inputs = (xb / (levels - 1)).to(torch.float32)
        mu, logvar, top = model.forward_encoder(inputs)
        eps = noise[start:start + b]
        z = mu + eps * torch.exp(0.5 * logvar)
        location, auxiliary = model.forward_decoder(z, top)
        p = 1 + auxiliary.shape[1]
        planes = torch.cat([location, auxiliary], dim=1).to(torch.float64).reshape(b, p, -1).permute(1, 0, 2)
        xf = xb.reshape(b, -1)
        if kind == "discretized-logistic":
            logp = logistic_log_probability(xf, planes, levels, mixtures)
        else:
            logp = beta_binomial_log_probability(xf, planes, levels)
        total_rec -= logp.sum().item()
        mu64, lv64 = mu.to(torch.float64), logvar.to(torch.float64)
        total_kl += (0.5 * (mu64 * mu64 + torch.exp(lv64) - 1 - lv64)).sum().item()
    d = images.shape[1] * images.shape[2]
    loss = (total_rec + total_kl) / n
    result = {"likelihood": kind, "levels": levels, "mixtures": mixtures, "samples": n,
              "reconstruction": total_rec / n, "kl": total_kl / n, "loss": loss,
              "bits_per_dimension": loss / (d * math.log(2))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{kind} ({levels} levels, {mixtures} component{'s' if mixtures > 1 else ''}): −ELBO {loss:.4f} nats/image, "
              f"{result['bits_per_dimension']:.5f} bits/dim over {n} images (reconstruction {total_rec / n:.4f}, KL {total_kl / n:.4f})")


if __name__ == "__main__":
    main()
