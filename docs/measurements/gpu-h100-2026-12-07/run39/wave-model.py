# A wave model of run 39 call 1 timings (fa3, fa3wt; bf16, 32/8 heads, hd 128, causal, block size 16):
# each block takes c + a x (its key tiles of 64), blocks dispatched heaviest first onto
# 132 SMs x (blocks an SM) slots as slots free up; a and c fitted per kernel by least
# squares on the relative error; then the same with c = 0 (a block start and finish hidden,
# as a persistent kernel that overlaps them with the previous tile would). Run: python3 wave-model.py
import heapq, itertools, math
SM=132
meas={ # (seqs,len): (fa3 us, fa3wt us) run 39, means of two
 (1,512):(24.85,24.25),(1,768):(36.6,33.0),(1,1024):(46.85,43.8),(1,1536):(74.65,64.75),(1,2048):(121.85,108.15),
 (2,1024):(70.8,70.35),(4,1024):(125.8,134.9),(8,512):(84.2,97.05),(16,512):(156.05,185.1)}
H=32
def blocks(seqs,L,BQ):
    out=[]
    qt=math.ceil(L/BQ)
    for t in range(qt-1,-1,-1):       # heaviest first, heads fastest
        for s in range(seqs):
            for h in range(H):
                hi=min(L,(t+1)*BQ); out.append(math.ceil(hi/64))
    return out
def sim(bl,slots,a,c):
    q=[0.0]*(SM*slots); heapq.heapify(q); end=0
    for tiles in bl:
        t=heapq.heappop(q); t2=t+c+a*tiles; end=max(end,t2); heapq.heappush(q,t2)
    return end
def fit(k,BQ,slots):
    best=None
    for a in [x*0.02 for x in range(10,200)]:
        for c in [x*0.25 for x in range(0,40)]:
            err=sum((sim(blocks(s,L,BQ),slots,a,c)/m[k]-1)**2 for (s,L),m in meas.items())
            if best is None or err<best[0]: best=(err,a,c)
    return best
for k,BQ,slots,name in [(0,128,2,'fa3'),(1,192,1,'fa3wt')]:
    err,a,c=fit(k,BQ,slots)
    print(f"{name}: a={a:.2f} us/tile (per block slot), c={c:.2f} us/block, rms rel err {math.sqrt(err/len(meas)):.3f}")
    for (s,L),m in meas.items():
        print(f"   {s}x{L}: measured {m[k]:.1f}  model {sim(blocks(s,L,BQ),slots,a,c):.1f}  with c=0: {sim(blocks(s,L,BQ),slots,a,0):.1f}")
