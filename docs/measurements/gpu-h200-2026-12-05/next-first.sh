# The first call of a session (session 24): which script goes first depends on the card
# lent, known only once the call runs. On an H200, next-r28d.sh (the standing rows
# with the defaults and their profiles, owed since run 25); on any other card,
# next-r30a.sh (fdtc's trial and bits, whose answer does not depend on the card). Copy
# this and both scripts to gpurun/ first.
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
    exec bash gpurun/next-r28d.sh
else
    exec bash gpurun/next-r30a.sh
fi
