# The first call of a session (after session 36): next-r42a.sh on any sm_90 card (what
# FA3WTS_ALIGN_END owes: the fp16 shape check and timings against the tree and fa3); then,
# on the warm machine, the queue's next items (README.md).
# Copy this and the scripts to gpurun/ first.
exec bash gpurun/next-r42a.sh
