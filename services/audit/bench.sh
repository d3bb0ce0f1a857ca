#!/usr/bin/env bash
# The audit's throughput benchmark, before and after, in one run: a backlog
# of 100,000 events on STAGING_EVENTS into MariaDB/MySQL through the whole
# audit (fetch, decode, one transaction per batch, acknowledge), against the
# ceiling of a plain loop of 100-row INSERTs of the same rows on the same
# server. "before" is the audit as committed at BASE (default HEAD), built
# with this tree's benchmark harness; "after" is this working tree. The two
# alternate ROUNDS times (default 3) so that the noise of a shared machine
# falls on both; the summary gives medians and ratios.
#
#   STAGING_TEST_MYSQL_DSN='root:@tcp(127.0.0.1:3306)/' services/audit/bench.sh
#
# Without STAGING_TEST_MYSQL_DSN it says so and exits 0 (as the tests skip).
set -euo pipefail

: "${ROUNDS:=3}" "${BASE:=HEAD}" "${BATCH:=2000}"
if [[ -z ${STAGING_TEST_MYSQL_DSN:-} ]]; then
	echo "audit bench: SKIP, STAGING_TEST_MYSQL_DSN is not set (e.g. 'root:@tcp(127.0.0.1:3306)/')"
	exit 0
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The baseline tree: the committed code, this tree's benchmark.
git -C "$root" archive "$BASE" | tar -x -C "$work"
mkdir -p "$work/bin"
cp "$here/bench_test.go" "$work/services/audit/bench_test.go"
(cd "$work/services/audit" && go test -c -o "$work/bin/before" .)
(cd "$here" && go test -c -o "$work/bin/after" .)

filter="BacklogIntoMySQL/batch=${BATCH}\$|PlainInsertsMySQL"
for round in $(seq "$ROUNDS"); do
	for which in before after; do
		log="$work/$which-$round.log"
		if ! "$work/bin/$which" -test.run '^$' -test.bench "$filter" -test.benchtime 1x >"$log" 2>&1; then
			echo "round $round $which: FAILED, output:" >&2
			tail -n 20 "$log" >&2
		fi
		awk -v w="$which" -v r="$round" '/events\/s/ {
				name = ($1 ~ /Plain/) ? "plain" : "audit"
				for (i = 2; i <= NF; i++) {
					if ($(i+1) == "events/s") v = $i
					if ($(i+1) == "machine-cpu-us/event") c = $i
				}
				printf "round %s %-6s %-5s %8.0f events/s %6.1f machine-cpu-us/event\n", r, w, name, v, c
			}' "$log"
	done
done | tee "$work/results"

awk -v cores="$(nproc)" '
	{ v[$3 " " $4] = v[$3 " " $4] " " $5; c[$3 " " $4] = c[$3 " " $4] " " $7 }
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
		return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	END {
		print ""
		print "medians (events/s) and ratios:"
		split("before after", order, " ")
		for (k = 1; k <= 2; k++) {
			w = order[k]; a = median(v[w " audit"]); p = median(v[w " plain"])
			printf "  %-6s audit %6.0f   plain ceiling %6.0f   audit/ceiling %.2f\n", w, a, p, a / p
			ca = median(c[w " audit"]); cp = median(c[w " plain"])
			printf "  %-6s machine CPU per event: audit %.1f us, plain %.1f us (%d cores allow at most %.0f and %.0f events/s)\n", w, ca, cp, cores, cores * 1e6 / ca, cores * 1e6 / cp
			m[w] = a
		}
		printf "  after/before %.2f\n", m["after"] / m["before"]
	}' "$work/results"
