# For each layer of SmolLM2 listed: the largest |score| and how far attention outputs cancel
# (sum over keys of p |v| over |o|), from the all-layers golden (q and k after RoPE, v).
# Run from the repository root with a Python that has numpy: python3 THIS.py
import sys, numpy as np
sys.path.insert(0, 'tools/python')
import llamaref
g = llamaref.read_dump('fixtures/golden/smollm2-135m-all-layers.safetensors')
pos = g.positions; lens = g.seq_lens if g.seq_lens is not None else [len(pos)]
H, hd, nh, nkv = 576, 64, 9, 3
inv = 1.0 / (100000.0 ** (np.arange(0, hd, 2) / hd))
def rope(x, nheads):
    x = x.reshape(len(x), nheads, hd)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    c = np.concatenate([c, c], 1)[:, None, :]; s = np.concatenate([s, s], 1)[:, None, :]
    rh = np.concatenate([-x[..., hd//2:], x[..., :hd//2]], -1)
    return x * c + rh * s
for L in [0, 1, 2, 9, 15, 29]:
    q = rope(g.values(f'model.layers.{L}.self_attn.q_proj'), nh)
    k = rope(g.values(f'model.layers.{L}.self_attn.k_proj'), nkv)
    v = g.values(f'model.layers.{L}.self_attn.v_proj').reshape(-1, nkv, hd)
    o_ref = g.values(f'model.layers.{L}.self_attn.o_proj.input').reshape(-1, nh, hd)
    T = len(q); ratios = []; smax = 0
    start = 0
    for n in lens:
        for t in range(start, start + n):
            for h in range(nh):
                kk = k[start:t+1, h // 3]; vv = v[start:t+1, h // 3]
                s = kk @ q[t, h] / np.sqrt(hd); smax = max(smax, np.abs(s).max())
                p = np.exp(s - s.max()); p /= p.sum()
                o = p @ vv
                mag = p @ np.abs(vv)
                ratios.append(mag / np.maximum(np.abs(o), 1e-30))
        start += n
    r = np.concatenate(ratios)
    # f32 order moves o by about 2^-24 * sqrt(keys) * mag; a bf16 ulp of o is 2^-8 |o|: flips likely where ratio > 2^16/sqrt(keys)
    print(f'layer {L}: max |score| {smax:.1f}; cancellation sum p|v| / |o|: median {np.median(r):.1f}, 99.9% {np.quantile(r, 0.999):.0f}, max {r.max():.0f}; share > 2^12: {(r > 4096).mean():.2e}, > 2^14: {(r > 16384).mean():.2e}')
