#!/usr/bin/env bash
# Installs what the test suite needs beyond Go: the stock minisign tool (its
# signatures are checked against ours), curl/wget and apt's tools for the
# real-client end-to-end tests, strace (the
# chaos suite places kill -9 points on exact system calls). Idempotent; installs only what is missing.
set -euo pipefail
need=()
command -v minisign >/dev/null || need+=(minisign)
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
command -v apt-ftparchive >/dev/null || need+=(apt-utils)
command -v dpkg-scanpackages >/dev/null || need+=(dpkg-dev)
command -v rsync >/dev/null || need+=(rsync)
command -v strace >/dev/null || need+=(strace)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "test-deps: missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
		exit 1
	fi
	echo "test-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
go mod download
