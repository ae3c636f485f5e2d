# run 42, call 3 (warm): next-r41c.sh with FA3WTS_ALIGN_END alone (call 2's trial: the knob
# that won), its bf16 shape check.
KNOBS="-DFA3WTS_ALIGN_END=1" REUSE=1 LIMIT=570 PREC=bf16 bash gpurun/next-r41c.sh
