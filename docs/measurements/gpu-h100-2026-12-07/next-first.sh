# The first call of a session (after session 37): next-r43a.sh on any sm_90 card, an H200
# first (the default's prefill with end-aligned work tiles and FA3WT_MAX_WAVES 12: the chooser's
# checks and the prefill rows); then, on the warm machine, the queue's next items
# (README.md). Copy this and the scripts to gpurun/ first.
exec bash gpurun/next-r43a.sh
