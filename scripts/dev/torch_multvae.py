#!/usr/bin/env python3
"""A PyTorch port of Mult-VAE (Liang et al. 2018; dawenl/vae_cf's
MultiVAE), for the throughput comparison of issue 20.

    python3 scripts/dev/torch_multvae.py --interactions ratings.csv --threads 2 [--compile] [--bf16]

The model and training step follow the authors' notebook: input x/‖x‖,
dropout (keep 0.5), encoder I → 600 → 2·200 (tanh), decoder 200 → 600 → I
(tanh), multinomial log-likelihood −Σ log_softmax(logits)·x, KL with
β = min(0.2, step/200000), Adam lr 1e-3, batch 500, users shuffled each
epoch. The data are the same clicks vae-mpi trains on (ratings ≥ 4, users
and items in order of first appearance), held dense in memory. Prints
users/s of training steps (the first epoch excluded as warm-up) and the
final training loss (and a RESULT line of JSON for scripts/bench.sh); --heldout-users N also ranks held-out users like
`vae-mpi recommend --evaluate` (a different random split, for a rough
quality check).
"""
import argparse
import csv
import json
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load(path, min_rating):
    users, items, rows, cols = {}, {}, [], []
    with open(path) as f:
        for r in csv.DictReader(f):
            if float(r["rating"]) < min_rating:
                continue
            u = users.setdefault(r["userId"], len(users))
            i = items.setdefault(r["movieId"], len(items))
            rows.append(u)
            cols.append(i)
    x = np.zeros((len(users), len(items)), np.float32)
    x[rows, cols] = 1
    return x


class MultiVAE(nn.Module):
    def __init__(self, items, hidden=600, latent=200, dropout=0.5):
        super().__init__()
        self.latent = latent
        self.q1, self.q2 = nn.Linear(items, hidden), nn.Linear(hidden, 2 * latent)
        self.p1, self.p2 = nn.Linear(latent, hidden), nn.Linear(hidden, items)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        h = self.drop(F.normalize(x))
        h = torch.tanh(self.q1(h))
        h = self.q2(h)
        mu, logvar = h[:, :self.latent], h[:, self.latent:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.p2(torch.tanh(self.p1(z))), mu, logvar


def loss_fn(logits, x, mu, logvar, beta):
    nll = -(F.log_softmax(logits, 1) * x).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return nll + beta * kl


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--interactions", required=True)
    p.add_argument("--min-rating", type=float, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--heldout-users", type=int, default=0)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(load(a.interactions, a.min_rating))
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(x))
    held, train = order[:a.heldout_users], order[a.heldout_users:]
    model = MultiVAE(x.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(batch, beta):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits, mu, logvar = model(batch)
        loss = loss_fn(logits.float(), batch, mu.float(), logvar.float(), beta)
        loss.backward()
        opt.step()
        return loss

    if a.compile:
        step = torch.compile(step)
    steps, timed_users, timed_seconds, last = 0, 0, 0.0, float("nan")
    for epoch in range(a.epochs):
        model.train()
        perm = rng.permutation(train)
        t0, users = time.perf_counter(), 0
        for s in range(0, len(perm), a.batch_size):
            idx = torch.from_numpy(perm[s:s + a.batch_size])
            last = float(step(x[idx], min(0.2, steps / 200000)))
            steps += 1
            users += len(idx)
        seconds = time.perf_counter() - t0
        if epoch > 0:
            timed_users += users
            timed_seconds += seconds
        print(f"epoch {epoch + 1}: {users / seconds:.0f} users/s, loss {last:.3f}", flush=True)
    print(f"median-free summary: {timed_users / max(timed_seconds, 1e-9):.0f} users/s over epochs 2…{a.epochs} "
          f"(threads {a.threads}, compile {a.compile}, bf16 {a.bf16})")
    # For scripts/bench.sh, in the shape of ../shared/bench/torch_vae.py's summary.
    print("RESULT " + json.dumps({"model": "multvae", "threads": a.threads, "compile": a.compile, "bf16": a.bf16,
                                  "epochs": [{"samples_per_s": timed_users / max(timed_seconds, 1e-9)}]}), flush=True)
    if a.heldout_users:
        model.eval()
        ndcg = []
        with torch.no_grad():
            for u in held:
                clicks = np.flatnonzero(x[u].numpy())
                if len(clicks) < 5:
                    continue
                out = rng.permutation(clicks)[:int(0.2 * len(clicks))]
                fold = np.setdiff1d(clicks, out)
                v = torch.zeros(1, x.shape[1]); v[0, fold] = 1
                scores = model(v)[0][0].numpy()
                scores[fold] = -np.inf
                top = np.argsort(-scores, kind="stable")[:100]
                gains = np.isin(top, out) / np.log2(np.arange(2, 102))
                ideal = (1 / np.log2(np.arange(2, 2 + min(100, len(out))))).sum()
                ndcg.append(gains.sum() / ideal)
        print(f"held-out NDCG@100 {np.mean(ndcg):.4f} over {len(ndcg)} users")


if __name__ == "__main__":
    main()
