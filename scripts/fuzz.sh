#!/usr/bin/env bash
# make fuzz: runs every go-fuzz target of the module (func FuzzXxx in a
# _test.go file) for FUZZTIME each (default 60s), one after another, and
# prints one summary line per target: executions, new corpus entries, and
# whether it failed. A failing input is written by Go under the package's
# testdata/fuzz/FuzzXxx/ and makes this script exit 1.
#
#   FUZZTIME=10m scripts/fuzz.sh            # every target
#   FUZZTIME=2m scripts/fuzz.sh ./acl ./fsm  # only these packages
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-60s}
# Parallel fuzzing workers per target; default: all cores.
FUZZ_PARALLEL=${FUZZ_PARALLEL:-$(nproc 2>/dev/null || echo 2)}
pkgs=("$@")
[[ ${#pkgs[@]} -gt 0 ]] || mapfile -t pkgs < <(go list ./...)
logdir=${FUZZ_LOG_DIR:-tmp/fuzz}
mkdir -p "$logdir"
status=0
summary=()
for pkg in "${pkgs[@]}"; do
	targets=$(go test "$pkg" -list '^Fuzz' 2>/dev/null | grep '^Fuzz' || true)
	for t in $targets; do
		log="$logdir/$(basename "$pkg")-$t.log"
		echo "--- fuzz $pkg $t for $FUZZTIME" >&2
		if go test "$pkg" -run '^$' -fuzz "^${t}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" >"$log" 2>&1; then
			result=ok
		else
			result=FAILED
			status=1
		fi
		last=$(grep -E 'fuzz: elapsed' "$log" | tail -n 1 | sed -E 's/^.*fuzz: //')
		summary+=("$(printf '%-8s %-24s %-28s %s' "$result" "$(basename "$pkg")" "$t" "${last:-no progress line; see $log}")")
	done
done
echo
printf '%s\n' "${summary[@]}"
exit $status
