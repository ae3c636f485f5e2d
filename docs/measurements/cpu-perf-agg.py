# agg.py DATA TIDS...: share of cpu-clock samples per DSO and per top symbol for the given threads.
import subprocess, sys, collections
data, tids = sys.argv[1], set(sys.argv[2:])
out = subprocess.run(['perf', 'script', '-i', data, '-F', 'tid,ip,sym,dso'], capture_output=True, text=True).stdout
dso = collections.Counter(); sym = collections.Counter(); n = 0
for line in out.splitlines():
    p = line.split()
    if not p or p[0] not in tids: continue
    n += 1
    d = p[-1].strip('()').split('/')[-1]
    s = ' '.join(p[2:-1]) or '?'
    if s.startswith('[unknown]') or s == '?': s = 'unsymbolized'
    s = s.split('+')[0]
    dso[d] += 1; sym[(d, s)] += 1
print(f'{n} samples')
for d, c in dso.most_common(8): print(f'  {100*c/n:5.1f}%  {d}')
print('top symbols:')
for (d, s), c in sym.most_common(15): print(f'  {100*c/n:5.1f}%  {d}  {s}')
