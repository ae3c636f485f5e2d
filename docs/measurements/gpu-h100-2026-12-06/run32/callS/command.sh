# run 32, call S (session 26): the command typed at the console with the session's last
# 311 s of device time, on a fresh H100 (carry .devdeps and gpurun). mmr against
# -DMR_X_AHEAD=1 (the same bits), cublas the peer; the trial's files are trial/.
source gpurun/env.sh; T0=$(date +%s); nvidia-smi --query-gpu=name --format=csv,noheader
bash tools/gpu-check.sh --build-only > $OUT/build.log 2>&1 || { tail -20 $OUT/build.log; exit 1; }
echo "built $(( $(date +%s) - T0 )) s"
export LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu CPATH=/tmp/llamaref-dd/usr/include LD_LIBRARY_PATH=/tmp/llamaref-dd/usr/lib/x86_64-linux-gnu
timeout $(( 225 - ($(date +%s) - T0) )) bash tools/gpu-trial.sh --build $B --out $OUT/trial --op linear --variant mmr \
  --shape T=4,N=4096,K=4096 --shape T=8,N=4096,K=4096 --shape T=4,N=6144,K=4096 --peer cublas -- "" -DMR_X_AHEAD=1 2>&1 | tail -12
echo "end $(( $(date +%s) - T0 )) s"; cat $OUT/trial/perf.txt 2>/dev/null | cut -c1-200
