#!/usr/bin/env bash
# make bench: benchmarks (docs/benchmarks.md).  Not implemented yet.
echo "bench: benchmarks are not implemented yet" >&2
exit 1
