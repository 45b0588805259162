#!/usr/bin/env python3
"""Golden values for the deeper and the conditional VAEs (issue 9), in the
style of shared/golden/make_golden.py: PyTorch in float64 from float32-exact
inputs; names and layouts follow PyTorch. Writes into
Tests/VAEModelTests/Fixtures/. Needs torch; the tests do not.

Run: python3 scripts/dev/make_golden_models.py
"""
import json, math, os
import torch
import torch.nn.functional as F

torch.manual_seed(2026)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "VAEModelTests", "Fixtures")
D = torch.float64


def f32(t):
    return t.float().double()


def entry(t):
    t = t.detach()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def kld(mu, logvar):
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum")


def rnd(*shape, fan_in):
    b = 1 / math.sqrt(fan_in)
    return f32((torch.rand(*shape, dtype=D) * 2 - 1) * b).requires_grad_()


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as fh:
        json.dump(obj, fh, indent=1)
    print("wrote", name)


def conv_params(C, chans, Z, S_h, S_w, K=0):
    """enc.conv1..N, enc.fc_mu/fc_logvar, dec.fc, dec.deconv1..N (mirror)."""
    p = {}
    cin = C + K
    for i, c in enumerate(chans, 1):
        p[f"enc.conv{i}.weight"] = rnd(c, cin, 3, 3, fan_in=cin * 9)
        p[f"enc.conv{i}.bias"] = rnd(c, fan_in=cin * 9)
        cin = c
    n = len(chans)
    F_ = chans[-1] * (S_h >> n) * (S_w >> n)
    p["enc.fc_mu.weight"], p["enc.fc_mu.bias"] = rnd(Z, F_, fan_in=F_), rnd(Z, fan_in=F_)
    p["enc.fc_logvar.weight"], p["enc.fc_logvar.bias"] = rnd(Z, F_, fan_in=F_), rnd(Z, fan_in=F_)
    p["dec.fc.weight"], p["dec.fc.bias"] = rnd(F_, Z + K, fan_in=Z + K), rnd(F_, fan_in=Z + K)
    outs = list(reversed(chans[:-1])) + [C]
    cin = chans[-1]
    for i, o in enumerate(outs, 1):
        p[f"dec.deconv{i}.weight"] = rnd(cin, o, 3, 3, fan_in=o * 9)
        p[f"dec.deconv{i}.bias"] = rnd(o, fan_in=o * 9)
        cin = o
    return p


def conv_forward(p, x, eps, chans, onehot=None):
    B, C, H, W = x.shape
    n = len(chans)
    h = x
    if onehot is not None:
        h = torch.cat([x, onehot[:, :, None, None].expand(B, onehot.shape[1], H, W)], 1)
    for i in range(1, n + 1):
        h = F.relu(F.conv2d(h, p[f"enc.conv{i}.weight"], p[f"enc.conv{i}.bias"], stride=2, padding=1))
    h = h.flatten(1)
    mu = F.linear(h, p["enc.fc_mu.weight"], p["enc.fc_mu.bias"])
    lv = F.linear(h, p["enc.fc_logvar.weight"], p["enc.fc_logvar.bias"])
    z = mu + eps * torch.exp(0.5 * lv)
    zin = z if onehot is None else torch.cat([z, onehot], 1)
    d = F.relu(F.linear(zin, p["dec.fc.weight"], p["dec.fc.bias"])).view(B, chans[-1], H >> n, W >> n)
    for i in range(1, n + 1):
        d = F.conv_transpose2d(d, p[f"dec.deconv{i}.weight"], p[f"dec.deconv{i}.bias"], stride=2, padding=1,
                               output_padding=1)
        if i < n:
            d = F.relu(d)
    return mu, lv, d


def conv_case(name, about, C, chans, Z, S, B, K=0):
    p = conv_params(C, chans, Z, S, S, K)
    x = f32(torch.rand(B, C, S, S, dtype=D))
    eps = f32(torch.randn(B, Z, dtype=D))
    labels = [i % K for i in range(B)] if K else None
    onehot = F.one_hot(torch.tensor(labels), K).to(D) if K else None
    mu, lv, logits = conv_forward(p, x, eps, chans, onehot)
    loss = bce(logits, x) + kld(mu, lv)
    grads = torch.autograd.grad(loss, list(p.values()))
    obj = {
        "about": about,
        "config": {"image": [C, S, S], "channels": chans, "latent": Z, "batch": B, "classes": K},
        "parameters": {k: entry(v) for k, v in p.items()},
        "x": entry(x), "eps": entry(eps), "mu": entry(mu), "logvar": entry(lv), "logits": entry(logits),
        "loss_sum": float(loss),
        "gradients": {k: entry(g) for k, g in zip(p.keys(), grads)},
    }
    if K:
        obj["labels"] = labels
    dump(name, obj)


conv_case("conv3_rgb_vae.json",
          "Three-stage conv VAE on 3x16x16 (NCHW): conv1..3 Conv2d(3x3, stride 2, pad 1) relu with channels "
          "(4, 6, 8) -> (8,2,2); flatten 32 -> fc_mu/fc_logvar (3). Decoder: fc (32,3) relu, view (8,2,2); "
          "deconv1 ConvTranspose2d(8,6), deconv2 (6,4), deconv3 (4,3), each 3x3 stride 2 pad 1 output_padding 1, "
          "relu after all but the last -> logits (3,16,16). loss_sum = BCE-with-logits(sum) + KLD(sum); gradients "
          "of loss_sum.",
          C=3, chans=[4, 6, 8], Z=3, S=16, B=2)

conv_case("conditional_conv_vae.json",
          "Conditional conv VAE (Sohn et al. 2015) on 1x8x8 with K = 3 classes: the one-hot label enters the "
          "encoder as K constant channels after the image's (conv1 takes 1+3 channels) and the decoder beside z "
          "(dec.fc takes Z+K = 2+3 inputs, [z, onehot]). Otherwise the two-stage model of conv_vae.json with "
          "channels (4, 6). labels[i] = i mod K.",
          C=1, chans=[4, 6], Z=2, S=8, B=3, K=3)

# ------------------------------------------------------ conditional MLP VAE
I, H, Z, B, K = 12, 8, 3, 5, 4
def lin(o, i):
    return rnd(o, i, fan_in=i), rnd(o, fan_in=i)
p = {}
for name, (o, i) in {"fc1": (H, I + K), "fc21": (Z, H), "fc22": (Z, H), "fc3": (H, Z + K), "fc4": (I, H)}.items():
    p[name + ".weight"], p[name + ".bias"] = lin(o, i)
x = f32(torch.rand(B, I, dtype=D))
eps = f32(torch.randn(B, Z, dtype=D))
labels = [2, 0, 3, 1, 2]
onehot = F.one_hot(torch.tensor(labels), K).to(D)
h1 = F.relu(F.linear(torch.cat([x, onehot], 1), p["fc1.weight"], p["fc1.bias"]))
mu = F.linear(h1, p["fc21.weight"], p["fc21.bias"])
lv = F.linear(h1, p["fc22.weight"], p["fc22.bias"])
z = mu + eps * torch.exp(0.5 * lv)
h3 = F.relu(F.linear(torch.cat([z, onehot], 1), p["fc3.weight"], p["fc3.bias"]))
logits = F.linear(h3, p["fc4.weight"], p["fc4.bias"])
loss = bce(logits, x) + kld(mu, lv)
grads = torch.autograd.grad(loss, list(p.values()))
dump("conditional_mlp_vae.json", {
    "about": "Conditional MLP VAE (Sohn et al. 2015), K = 4 classes: fc1 takes [x, onehot(label)] (I+K), fc3 takes "
             "[z, onehot(label)] (Z+K); otherwise mlp_vae.json's model. loss_sum = BCE(sum) + KLD(sum); gradients of "
             "loss_sum.",
    "config": {"input": I, "hidden": H, "latent": Z, "batch": B, "classes": K},
    "parameters": {k: entry(v) for k, v in p.items()},
    "x": entry(x), "eps": entry(eps), "labels": labels,
    "mu": entry(mu), "logvar": entry(lv), "logits": entry(logits), "loss_sum": float(loss),
    "gradients": {k: entry(g) for k, g in zip(p.keys(), grads)},
})
