# The first call of a session (after session 34): next-r40b.sh (what attention fa3wts still
# owes before the default's prefill may take it) on any card; on an H200 the second call,
# warm (REUSE=1), is next-r38a.sh (the kernel tracer on the decode rows, where batch 1
# misses its target on that card). Copy this and both scripts to gpurun/ first.
exec bash gpurun/next-r40b.sh
