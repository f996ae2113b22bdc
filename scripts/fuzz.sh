#!/usr/bin/env bash
# Runs every Go fuzz target in the module with the given budget each:
# an execution count like 100000x (the default, what CI runs) or a duration
# like 2m (what `make soak` runs).
#
# Why a count by default: with a duration, Go's fuzz coordinator can fail a
# target with a bare "context deadline exceeded" at the very end of the
# budget although no input failed (golang/go#75804, fixed in Go 1.27). A
# count has no deadline to race. With a duration, such a failure that wrote
# no failing input under testdata/fuzz/ is reported as that race and the
# run goes on; any other failure fails the run.
set -euo pipefail
budget=${1:-100000x}
shopt -s nullglob
inputs() { local f=("$1"/*); echo ${#f[@]}; } # failing inputs saved so far
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./...); do
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for f in $(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)\(f \*testing\.F\)' "$dir"/*_test.go 2>/dev/null | sed -E 's/^func (Fuzz[A-Za-z0-9_]+).*/\1/'); do
		echo "fuzz $pkg $f ($budget)"
		corpus=$dir/testdata/fuzz/$f
		before=$(inputs "$corpus")
		if go test -run '^$' -fuzz "^$f\$" -fuzztime "$budget" "$pkg" 2>&1 | tee "$log"; then
			continue
		fi
		after=$(inputs "$corpus")
		if [[ $budget != *x ]] && ((after == before)) && grep -q '^    context deadline exceeded$' "$log"; then
			echo "fuzz $pkg $f: no failing input; Go's fuzz-deadline race (golang/go#75804), not a finding"
			continue
		fi
		echo "fuzz $pkg $f FAILED (a failing input, if any, is under ${corpus#"$PWD"/})"
		exit 1
	done
done
