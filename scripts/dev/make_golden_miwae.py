#!/usr/bin/env python3
"""Golden values for the importance-weighted bound with missing values (MIWAE,
Mattei & Frellsen 2019), written the way the authors' PyTorch notebook
computes it: K draws z_k = mu + sigma eps_k, log w = sum over observed entries of
log StudentT(x | loc, softplus(.) + 1e-3, softplus(.) + 3) + log N(z; 0, I)
- log N(z; mu, sigma^2), loss = -sum_b logsumexp_k(log w) + B log K. The model
is vae-mpi's MLP with two hidden layers (6, 5), latent 2, a learned fill of the
missing inputs, on 3 rows of 4 values, one of them entirely missing; K = 5.
Float64 from float32-exact inputs, like shared/golden/make_golden.py. Writes
Tests/VAEModelTests/Fixtures/miwae_bound.json; needs torch (the tests do not).

Run: python3 scripts/dev/make_golden_miwae.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(19)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "VAEModelTests", "Fixtures")
D64 = torch.float64
B, D, Z, K = 3, 4, 2, 5
H1, H2 = 6, 5


def f32(t):
    return t.float().double()


def entry(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def linear(n_out, n_in):
    b = 1 / math.sqrt(n_in)
    w = f32((torch.rand(n_out, n_in, dtype=D64) * 2 - 1) * b).requires_grad_()
    bias = f32((torch.rand(n_out, dtype=D64) * 2 - 1) * b).requires_grad_()
    return w, bias


params = {}
for name, (o, i) in {"fc1": (H1, D), "enc.hidden1": (H2, H1), "fc21": (Z, H2), "fc22": (Z, H2),
                     "fc3": (H2, Z), "dec.hidden1": (H1, H2), "fc4": (D, H1), "fc4_scale_df": (2 * D, H1)}.items():
    w, b = linear(o, i)
    params[name + ".weight"], params[name + ".bias"] = w, b
params["missing_fill"] = f32(torch.randn(D, dtype=D64) * 0.5).requires_grad_()

x_full = f32(torch.randn(B, D, dtype=D64))
mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 1]], dtype=D64)
x = x_full * mask                       # 0 where missing (vae-mpi's batches)
eps = f32(torch.randn(B * K, Z, dtype=D64))   # row b*K + k: draw k of row b


def lin(h, name):
    return h @ params[name + ".weight"].T + params[name + ".bias"]


def loss_fn():
    filled = x + (1 - mask) * params["missing_fill"]
    h = torch.relu(lin(torch.relu(lin(filled, "fc1")), "enc.hidden1"))
    mu, logvar = lin(h, "fc21"), lin(h, "fc22")
    sigma = torch.exp(0.5 * logvar)
    z = mu.repeat_interleave(K, 0) + sigma.repeat_interleave(K, 0) * eps
    g = torch.relu(lin(torch.relu(lin(z, "fc3")), "dec.hidden1"))
    loc, aux = lin(g, "fc4"), lin(g, "fc4_scale_df")
    scale = F.softplus(aux[:, :D]) + 1e-3
    df = F.softplus(aux[:, D:]) + 3
    xr, mr = x.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)
    log_px = (torch.distributions.StudentT(df, loc, scale).log_prob(xr) * mr).sum(1)
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    log_q = torch.distributions.Normal(mu.repeat_interleave(K, 0), sigma.repeat_interleave(K, 0)).log_prob(z).sum(1)
    log_w = (log_px + log_pz - log_q).reshape(B, K)
    bound = torch.logsumexp(log_w, 1) - math.log(K)
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return -bound.sum(), kl, log_w


loss, kl, log_w = loss_fn()
loss.backward()
out = {
    "config": {"batch": B, "dims": D, "latent": Z, "samples": K, "hidden": [H1, H2], "likelihood": "student-t"},
    "parameters": {k: entry(v) for k, v in params.items()},
    "x": entry(x), "mask": entry(mask), "eps": entry(eps),
    "loss": float(loss), "kl": float(kl), "log_weights": entry(log_w),
    "gradients": {k: entry(v.grad) for k, v in params.items()},
}
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "miwae_bound.json"), "w") as f:
    json.dump(out, f)
print("loss", float(loss), "kl", float(kl))
