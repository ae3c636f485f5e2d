# The first call of a session (session 29): on an H200, ../gpu-h200-2026-12-05/next-r28d.sh
# (the standing rows with the defaults and their profiles, owed since run 25); on
# any other card, next-r35c.sh (fa3wp's first run: whether it finishes, passes and is
# faster than fa3). Copy this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r28d.sh
else
    exec bash gpurun/next-r35c.sh
fi
