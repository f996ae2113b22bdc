#!/usr/bin/env bash
# The long part of the reliability suite (issue 6): every Go fuzz target for
# 2 minutes, then the soak of internal/chaos for 10 minutes — a master and
# two chained edges under 200 pkg-like clients while a set is published
# every 30 s and one edge restarts — printing its figures (requests, bytes,
# p99 latency, RSS, fds). Override with PKGCDN_SOAK_DURATION,
# PKGCDN_SOAK_PUBLISH_EVERY and FUZZTIME. Exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-2m}
export PKGCDN_SOAK_DURATION=${PKGCDN_SOAK_DURATION:-10m}
export PKGCDN_SOAK_PUBLISH_EVERY=${PKGCDN_SOAK_PUBLISH_EVERY:-30s}

echo "soak: fuzzing every target for $fuzztime"
bash scripts/fuzz.sh "$fuzztime"

echo "soak: $PKGCDN_SOAK_DURATION under load, a set every $PKGCDN_SOAK_PUBLISH_EVERY"
go test -count=1 -v -timeout 60m -run '^TestSoak$' ./internal/chaos/
