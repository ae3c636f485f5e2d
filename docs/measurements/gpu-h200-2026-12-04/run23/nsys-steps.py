"""Per-step kernel timeline of a decode run from `nsys stats -r cuda_gpu_trace -f csv`:
steps start at the embedding gather; for the last complete steps, the wall time, the sum
of kernel durations, the gaps and overlaps between consecutive kernels, and per kernel
kind the time a step."""
import csv, sys, re, collections
rows = []
with open(sys.argv[1]) as f:
    r = csv.DictReader(f)
    for d in r:
        name = d.get('Name') or d.get('Kernel Name') or ''
        try:
            st, du = int(d['Start (ns)']), int(d['Duration (ns)'])
        except (KeyError, ValueError):
            continue
        if 'memcpy' in name.lower() or 'memset' in name.lower() or '[CUDA' in name: continue
        g = d.get('GrdX', '')
        rows.append((st, du, name + (f' @grid {g}' if g else '')))
rows.sort()
starts = [i for i, (s, d, n) in enumerate(rows) if 'embedding' in n]
print(f'{len(rows)} kernels, {len(starts)} steps (embedding gathers)')
def kind(n):
    n = n.lower()
    g = n.split(' @grid ')[-1] if ' @grid ' in n else ''
    for k in ('gemv2', 'gemv', 'mma', 'nvjet', 'gemm', 'attention_fd', 'merge', 'rmsnorm', 'rotary', 'cache', 'activation', 'embedding', 'argmax', 'sample'):
        if k in n: return k + (f' ({g} blocks)' if k in ('gemv', 'gemv2', 'nvjet', 'gemm', 'mma') and g else '')
    return re.sub(r'[<(].*', '', n)[:40]
last = starts[-9:]  # the last 8 complete steps
tot = collections.Counter(); cnt = collections.Counter(); walls = []; sums = []; gaps = []; overl = []
for a, b in zip(last, last[1:]):
    seg = rows[a:b]
    walls.append(rows[b][0] - rows[a][0]); sums.append(sum(d for s, d, n in seg))
    end = seg[0][0] + seg[0][1]; g = o = 0
    for s, d, n in seg[1:]:
        if s > end: g += s - end
        else: o += end - s
        end = max(end, s + d)
    gaps.append(g); overl.append(o)
    for s, d, n in seg: tot[kind(n)] += d; cnt[kind(n)] += 1
k = len(walls)
if k == 0: sys.exit('no complete step')
print(f'steps {k}: wall {sum(walls)/k/1e3:.1f} us, kernels summed {sum(sums)/k/1e3:.1f} us, idle gaps {sum(gaps)/k/1e3:.1f} us, overlapped {sum(overl)/k/1e3:.1f} us')
print('| kind | launches a step | us a step | us a launch |'); print('| --- | --- | --- | --- |')
for n, t in tot.most_common():
    print(f'| {n} | {cnt[n]/k:.0f} | {t/k/1e3:.1f} | {t/cnt[n]/1e3:.2f} |')
