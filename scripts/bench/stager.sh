#!/usr/bin/env bash
# Stager benchmarks (issue 3): the stager binary as a process, against cp,
# cp -r and nginx in the same run, with medians and ratios. Run from the
# repository root (make bench does). Needs nginx (Debian nginx-light) for
# the download comparison: installed here when missing and run as root.
#
#   scripts/bench/stager.sh            # COUNT=3 samples of BENCHTIME=3x each
#   COUNT=5 scripts/bench/stager.sh
set -euo pipefail

COUNT=${COUNT:-3}
BENCHTIME=${BENCHTIME:-3x}
GO=${GO:-go}

if ! command -v nginx >/dev/null 2>&1; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
		apt-get install -y -q nginx-light >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q nginx-light >/dev/null; }
	else
		echo "stager.sh: nginx missing (apt-get install nginx-light); the nginx rows are skipped" >&2
	fi
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
set -x
STAGING_BENCH_STAGER=1 $GO test -run '^$' -bench 'LocalCopy1GiB|Tree10k|Download1GiB' \
	-benchtime="$BENCHTIME" -count="$COUNT" -timeout 30m ./services/stager/ | tee "$out"
{ set +x; } 2>/dev/null

# Medians per benchmark of MB/s, files/s, peak RSS and CPU per file, then
# the ratios the issue sets targets for.
awk '
function median(key,   n, i, j, t, a) {
	n = split(vals[key], a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i++) {
		if ($(i + 1) == "MB/s" || $(i + 1) == "files/s" || $(i + 1) == "peak-RSS-MiB" || $(i + 1) == "cpu-us/file") {
			k = name " " $(i + 1); vals[k] = vals[k] " " $i
			if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
		}
	}
}
END {
	print "\nmedians of " '"$COUNT"' " samples:"
	for (i = 1; i <= nk; i++) { m[order[i]] = median(order[i]); printf "  %-45s %10.1f\n", order[i], m[order[i]] }
	print "\nratios (target):"
	c = "BenchmarkLocalCopy1GiB/"; t = "BenchmarkTree10k/"; d = "BenchmarkDownload1GiB/"
	printf "  1 GiB copy: stager / cp            %.2fx (>= 0.95)\n", m[c "stager MB/s"] / m[c "cp MB/s"]
	printf "  1 GiB copy: stager / cp+fsync      %.2fx\n", m[c "stager MB/s"] / m[c "cp+fsync MB/s"]
	printf "  tree 10k:   stager / cp -r         %.2fx (>= 1.3)\n", m[t "stager files/s"] / m[t "cp-r files/s"]
	printf "  tree 10k:   stager / cp -r+syncfs  %.2fx\n", m[t "stager files/s"] / m[t "cp-r+syncfs files/s"]
	printf "  without sync (STAGING_STAGER_SYNC_COPIES=false):\n"
	printf "  1 GiB copy: stager-nosync / cp     %.2fx (>= 0.95)\n", m[c "stager-nosync MB/s"] / m[c "cp MB/s"]
	printf "  tree 10k:   stager-nosync / cp -r  %.2fx (>= 1.3)\n", m[t "stager-nosync files/s"] / m[t "cp-r files/s"]
	ng = m[d "nginx-sendfile MB/s"]; if (m[d "nginx-buffers MB/s"] > ng) ng = m[d "nginx-buffers MB/s"]
	if (ng > 0) {
		printf "  download:   stager sendfile / best nginx  %.2fx (>= 0.9; the default)\n", m[d "stager-sendfile MB/s"] / ng
		printf "  download:   stager buffered / best nginx  %.2fx\n", m[d "stager-buffered MB/s"] / ng
	}
	printf "  tree 10k:   stager CPU per file    %.1f us durable, %.1f us without sync\n", m[t "stager cpu-us/file"], m[t "stager-nosync cpu-us/file"]
	printf "  peak RSS (MiB, < 64): copy %.1f, tree %.1f, download buffered %.1f, sendfile %.1f\n", m[c "stager peak-RSS-MiB"], m[t "stager peak-RSS-MiB"], m[d "stager-buffered peak-RSS-MiB"], m[d "stager-sendfile peak-RSS-MiB"]
}' "$out"
