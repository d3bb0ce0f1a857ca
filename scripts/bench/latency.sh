#!/usr/bin/env bash
# Single-request latency and the cost of the path around a large copy, on
# the all-in-one stagingd built here (cmd/stagingd/breakdown_test.go,
# largecopy_test.go, bench_test.go). Prints three Markdown tables:
#   1. 4 KiB local_copy through POST /stage_data at concurrency 1 and 32,
#      against the bare flow (the least the contract asks) in the same run;
#   2. one request's time split at its events, at concurrency 1;
#   3. a 1 GiB local_copy through POST /stage_data against cp (without
#      sync) and cp + fsync (default durability), from dropped caches.
# The third needs root (it drops the page cache); without root it is left out, saying so.
#
# Settings, all optional (environment):
#   RUNS=3          fresh all-in-one per run of table 1; medians over them
#   REQUESTS=15000  requests per step of table 1 (concurrency 1 does a
#                   tenth); table 2 does 1500
#   COPY_MIB=1024   size of the large file (0: skip table 3)
#   ROUNDS=5        rounds of table 3
# STAGING_* variables pass through to stagingd.
set -euo pipefail

cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

CGO_ENABLED=0 go build -trimpath -o "$work/stagingd" ./cmd/stagingd
export STAGING_BENCH_BIN=$work/stagingd
echo "latency benchmark; load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"

bench() { # bench TEST OUT: run one benchmark test, print its table
	local name=$1 out=$2
	STAGING_BENCH_OUT=$out go test -run "^$name\$" -count=1 -timeout 60m -v ./cmd/stagingd >"$work/test.log" 2>&1 ||
		{ grep -v '^ *{' "$work/test.log" | tail -40; exit 1; }
	echo
	cat "$out"
}

STAGING_BENCH=1 STAGING_BENCH_RUNS=${RUNS:-3} STAGING_BENCH_REQUESTS=${REQUESTS:-15000} \
	STAGING_BENCH_LEVELS=1,32 STAGING_BENCH_MODES=seed,bare STAGING_BENCH_DOWNLOAD_MIB=0 \
	bench TestGatewayBench "$work/levels.md"
STAGING_BENCH_BREAKDOWN=1 STAGING_BENCH_REQUESTS=1500 bench TestLatencyBreakdown "$work/breakdown.md"
if [[ ${COPY_MIB:-1024} != 0 && $(id -u) != 0 ]]; then
	echo
	echo "the 1 GiB comparison is left out: dropping the page cache before each step needs root"
elif [[ ${COPY_MIB:-1024} != 0 ]]; then
	STAGING_BENCH_LARGE=1 STAGING_BENCH_COPY_MIB=${COPY_MIB:-1024} STAGING_BENCH_ROUNDS=${ROUNDS:-5} \
		bench TestLargeCopyBench "$work/large.md"
fi
