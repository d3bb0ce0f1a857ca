#!/usr/bin/env bash
# bench.sh [COUNT]: the jupyter-bridge's upload benchmark. Runs
# BenchmarkUpload200MiB COUNT times (default 6: even, because the order alternates and the second upload of a run is favoured): each run uploads a 200 MiB
# binary file into a running Jupyter server through the bridge (end to end,
# jupyter_copy to succeeded) and then with curl (curl-upload.sh, the same
# chunked PUTs, the same chunk size, the same hub and user), so the two
# alternate under the same machine load (which goes first alternates from
# run to run). Prints each run, then the medians of both throughputs, the
# median of the per-run bridge/curl ratios and the bridge's memory.
#
# The hub is the one the tests use (internal/hubtest: started from
# start.sh, or STAGING_TEST_JUPYTERHUB_URL/_TOKEN/_USERS_DIR); without one
# the benchmark skips. STAGING_BENCH_JUPYTER=1 is what lets it run (plain
# `go test -bench .` skips it, so it never runs beside other benchmarks).
set -euo pipefail

count="${1:-6}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

cd "$root/services/jupyter-bridge"
STAGING_BENCH_JUPYTER=1 go test -run '^$' -bench '^BenchmarkUpload200MiB$' -benchtime 1x -count "$count" -benchmem . | tee "$out"

awk '
function median(a, n,    i, j, t) {
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^BenchmarkUpload200MiB/ {
	n++
	for (i = 3; i < NF; i++) {
		u = $(i + 1)
		if (u == "MiB/s") br[n] = $i
		else if (u == "curl-MiB/s") cu[n] = $i
		else if (u == "bridge/curl") ra[n] = $i
		else if (u == "peak-heap-chunks") { he[n] = $i; if ($i > hmax) hmax = $i }
		else if (u == "peak-rss-MiB") { if ($i > rmax) rmax = $i }
		else if (u == "B/op") al[n] = $i / 1048576
	}
}
END {
	if (n == 0) { print "no results (skipped?)"; exit 0 }
	printf "\nsummary of %d runs, 200 MiB each (bridge and curl alternate within a run):\n", n
	printf "  bridge median %.1f MiB/s, curl median %.1f MiB/s\n", median(br, n), median(cu, n)
	printf "  bridge/curl: median of the per-run ratios %.2fx\n", median(ra, n)
	printf "  bridge memory while uploading: peak heap growth median %.2f chunks (max %.2f), peak RSS growth max %.1f MiB, allocated median %.1f MiB per upload\n", median(he, n), hmax, rmax, median(al, n)
}' "$out"
