# sourced on the device: the build of gpu-check.sh --build-only and the payload
export LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NCCL_NVLS_ENABLE=0
B=/tmp/llamaref-build
LD=$B/llama-diff
P=/tmp/pay
M=$P/SmolLM2-135M-Instruct.Q4_1.gguf
FA=$P/smollm2-135m-all-layers.safetensors
R=/tmp/r18; mkdir -p $R
summ() { python3 - "$1" <<'PY'
import json,sys
try:
    d=json.load(open(sys.argv[1]))
except Exception as e:
    print("no json", e); sys.exit()
sp=d.get('same_precision') or {}
f=sp.get('factor') or {}
bad=[s['name']+':'+str(s.get('max_ulps'))+'u/'+str(s.get('over')) for s in sp.get('stages',[]) if s.get('pass') is False]
print(d.get('result'), 'first', d.get('first_divergence'), 'same', sp.get('compared'), 'failed', sp.get('failed'), 'factor_failed', f.get('failed'), 'rounding', json.dumps(sp.get('rounding')), 'bad', ' '.join(bad[:6]))
PY
}
