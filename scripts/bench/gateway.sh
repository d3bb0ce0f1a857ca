#!/usr/bin/env bash
# Gateway end-to-end benchmark (issue 4): throughput and p50/p99 latency of
# 4 KiB local_copy requests at concurrency 1, 32 and 256 through a built
# stagingd (the all-in-one `make run` starts), its peak RSS, and a 1 GiB
# download through the gateway against the stager's own handler. Prints a
# Markdown table of medians over the runs (cmd/stagingd/bench_test.go).
#
# Settings, all optional (environment):
#   RUNS=3                 fresh all-in-one per run; medians over the runs
#   REQUESTS=3000          requests per step (concurrency 1 does a tenth)
#   LEVELS=1,32,256        concurrencies
#   MODES=seed,sse,bare    seed: POST /stage_data (waits for the outcome);
#                          sse: POST /api/v1/stagings + GET .../events;
#                          bare: the seed requests through the bare flow,
#                          the baseline (cmd/stagingd/bareflow_test.go)
#   DOWNLOAD_MIB=1024      size of the download compared (0: skip)
#   OUT=<file>             also write the table there
#   GATEWAY=1              send the requests through a standalone gateway
#                          process on stagingd's NATS server instead, and
#                          report its own peak RSS beside stagingd's
#   PROFILE=<file>         instead: run the all-in-one in the test process
#                          with a CPU profile written to <file>, and print
#                          its top functions (no RSS figure then)
# STAGING_* variables pass through to stagingd (e.g.
# STAGING_STAGER_CONCURRENCY=16).
set -euo pipefail

cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export STAGING_BENCH=1
export STAGING_BENCH_RUNS=${RUNS:-3}
export STAGING_BENCH_REQUESTS=${REQUESTS:-3000}
export STAGING_BENCH_LEVELS=${LEVELS:-1,32,256}
export STAGING_BENCH_MODES=${MODES:-seed,sse,bare}
export STAGING_BENCH_DOWNLOAD_MIB=${DOWNLOAD_MIB:-1024}
export STAGING_BENCH_OUT=${OUT:-$work/result.md}

if [[ -n ${PROFILE:-} ]]; then
	export STAGING_BENCH_INPROCESS=1
	go test -run '^TestGatewayBench$' -count=1 -timeout 60m \
		-cpuprofile "$PROFILE" -o "$work/stagingd.test" ./cmd/stagingd >"$work/test.log" 2>&1 ||
		{ cat "$work/test.log"; exit 1; }
	cat "$STAGING_BENCH_OUT"
	echo
	go tool pprof -top -cum -nodecount=40 "$work/stagingd.test" "$PROFILE" 2>/dev/null
	exit 0
fi

CGO_ENABLED=0 go build -trimpath -o "$work/stagingd" ./cmd/stagingd
export STAGING_BENCH_BIN=$work/stagingd
if [[ ${GATEWAY:-0} == 1 ]]; then
	CGO_ENABLED=0 go build -trimpath -o "$work/gateway" ./services/gateway/cmd/gateway
	export STAGING_BENCH_GATEWAY_BIN=$work/gateway
fi
echo "gateway benchmark: $STAGING_BENCH_RUNS run(s), levels $STAGING_BENCH_LEVELS, modes $STAGING_BENCH_MODES; load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
go test -run '^TestGatewayBench$' -count=1 -timeout 60m -v ./cmd/stagingd >"$work/test.log" 2>&1 ||
	{ grep -v '^ *{' "$work/test.log" | tail -40; exit 1; }
grep -E 'run [0-9]+ |download via' "$work/test.log" | sed 's/^ *bench_test.go:[0-9]*: /  /'
echo
cat "$STAGING_BENCH_OUT"
