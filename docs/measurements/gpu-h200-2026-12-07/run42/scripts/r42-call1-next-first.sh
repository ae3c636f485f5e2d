# The first call of a session (after session 35): on an H200 next-r38a.sh (the kernel tracer
# on the decode rows, where batch 1 misses its target on that card), then on the warm machine
# (REUSE=1) the prefill rows with the default's fa3wts and next-r41b.sh; on any other sm_90
# card next-r41b.sh (fa3wts' knobs FA3WTS_WG_STORE and FA3WTS_ALIGN_END: the trial, the
# sanitizers), then next-r41c.sh and next-r41a.sh warm (the queue's item 0).
# Copy this and the scripts to gpurun/ first.
case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
*H200*) exec bash gpurun/next-r38a.sh ;;
*) exec bash gpurun/next-r41b.sh ;;
esac
