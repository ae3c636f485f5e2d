#!/bin/sh
# build.sh NAME COMMIT: the library at COMMIT + the current bench source, CPU only.
set -e
name=$1; commit=$2
rm -rf src-$name; mkdir -p src-$name
(cd /work/wt/cpubench && git archive $commit ref) | tar -x -C src-$name
grep -v "LR_HAVE_CUDA\|LR_HAVE_NCCL" /work/wt/cpubench/config.h > src-$name/config.h
cp /work/wt/cpubench/bench/cpu_bench.c src-$name/
cd src-$name
gcc -g -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DHAVE_CONFIG_H -I. -Iref \
  -I/usr/include/x86_64-linux-gnu/openblas-pthread -pthread ref/*.c cpu_bench.c \
  -o ../$name -lopenblas -ljansson -lm
