#!/usr/bin/env python3
"""What the error model's isolated attention (o_proj.input) lacks on SmolLM2 at f32.

Inputs: the all-layers float64 golden (tools/gen-smollm2-fixture.py --sub-layers all
--out GOLDEN) and the JSON of `llama-diff check -b cpu -p f32 --isolate op -m SMOLLM2.gguf
-f GOLDEN --json` (check-f32-isolate-op-all-layers.json.gz here). For every layer it
recomputes the golden's attention (RoPE, causal softmax, one sequence of 13 tokens) and
three candidate terms for the error a correct float32 attention op adds, each a relative
L2 of the output, o_i = sum_j p_ij v_j moved by delta s_ij: sum_j p_ij delta s_ij (v_j - o_i):
  qk:    the rounding of its inputs q and k (var delta s = 2 r^2 sum_l q_l^2 k_l^2 / d);
  vcanc: v's relative error through an average that cancels (sqrt(sum p^2 |v|^2) / |o|);
  score: the scores' own absolute error: their rounding and the max subtracted
         (r^2 (s^2 + max^2)), their inputs (above), and their accumulation over head_dim
         (r^2 d/2 sum q^2 k^2 / d), which the softmax turns into relative errors of p.
Prints measured / predicted per layer, as the model has it and with the score term added
in quadrature. Usage: attention-terms.py GOLDEN CHECK.json[.gz]"""
import gzip, json, sys
import numpy as np
from safetensors.numpy import load_file

g = load_file(sys.argv[1])
op = gzip.open if sys.argv[2].endswith(".gz") else open
st = {s["name"]: s for s in json.load(op(sys.argv[2], "rt"))["stages"]}
H, KV, D, T, THETA = 9, 3, 64, 13, 100000.0  # SmolLM2-135M; the fixture's 13 tokens
r = 0.4247 * 2.0**-24                         # f32's RMS relative rounding (docs/error-model.md)
inv = 1.0 / THETA ** (np.arange(0, D, 2) / D)
ang = np.outer(np.arange(T), inv)
cos, sin = np.cos(np.concatenate([ang, ang], 1)), np.sin(np.concatenate([ang, ang], 1))

def rope(x):  # (T, heads, D), rotate-half
    rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
    return x * cos[:, None] + rot * sin[:, None]

with_score = []
print("layer  max|s|  measured  predicted  meas/pred  qk term  v cancel  score term  meas/(pred+score)")
for l in range(30):
    P = f"model.layers.{l}.self_attn."
    q = rope(g[P + "q_proj"].reshape(T, H, D))
    k = rope(g[P + "k_proj"].reshape(T, KV, D))
    v = g[P + "v_proj"].reshape(T, KV, D)
    n_qk = n_sc = n_v = den = smax = 0.0
    for h in range(H):
        kh = h // (H // KV)
        s = q[:, h] @ k[:, kh].T / np.sqrt(D)
        s = np.where(np.tril(np.ones((T, T))) > 0, s, -np.inf)
        m = s.max(1, keepdims=True)
        p = np.exp(s - m)
        p /= p.sum(1, keepdims=True)
        o = p @ v[:, kh]
        qk2 = (q[:, h] ** 2) @ (k[:, kh] ** 2).T / D
        sf = np.where(np.isfinite(s), s, 0)
        var_qk = 2 * r * r * qk2
        var_sc = r * r * (sf ** 2 + m ** 2) + var_qk + r * r * (D / 2) * qk2
        for i in range(T):
            dv2 = np.sum((v[: i + 1, kh] - o[i]) ** 2, 1)
            n_qk += np.sum(p[i, : i + 1] ** 2 * var_qk[i, : i + 1] * dv2)
            n_sc += np.sum(p[i, : i + 1] ** 2 * var_sc[i, : i + 1] * dv2)
        n_v += np.sum((p ** 2) @ np.sum(v[:, kh] ** 2, 1))
        den += np.sum(o ** 2)
        smax = max(smax, np.abs(sf).max())
    x = st[P + "o_proj.input"]
    meas, pred = x["rel_l2"], x["predicted"]
    sc = np.sqrt(n_sc / den)
    with_score.append(meas / np.hypot(pred, sc))
    print(f"{l:5d}  {smax:6.1f}  {meas:8.2e}  {pred:9.2e}  {meas / pred:9.2f}  {np.sqrt(n_qk / den):7.2e}"
          f"  {np.sqrt(n_v / den):8.2f}  {sc:10.2e}  {with_score[-1]:17.2f}")
w = sorted(with_score)
print(f"with the score term: measured / predicted {w[0]:.2f} to {w[-1]:.2f}, median {w[len(w) // 2]:.2f}")
