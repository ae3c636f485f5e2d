# The first call of a session (session 26): on an H200, ../gpu-h200-2026-12-05/next-r28d.sh
# (the standing rows with the defaults and their profiles, owed since run 25); on
# any other card, next-r32a.sh (fa3's block table in shared memory, whose answer holds for
# either card). Copy this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r28d.sh
else
    exec bash gpurun/next-r32a.sh
fi
