#!/usr/bin/env bash
# System tests against the docker-compose cluster (run by .ci/run when a
# Docker engine answers):
#   1. make docker: bin/coffer, deploy/ (root key, TLS; made once), coffer:latest
#   2. go test -tags docker ./e2e/docker (each test brings the compose cluster
#      up fresh and down again)
#   3. always, even on failure or Ctrl-C: every compose project and container
#      of this run is removed with its volumes.
# Knobs (environment): COFFER1_PORT/COFFER2_PORT/COFFER3_PORT (host ports of
# the APIs, default 17700/17710/17720 so that a cluster of yours on 7700 is not
# disturbed), COFFER_COMPOSE (compose command), GO_TEST_FLAGS (extra flags,
# e.g. "-run Partition").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

if [[ -z ${COFFER_COMPOSE:-} ]]; then
	if command -v docker-compose >/dev/null 2>&1; then
		COFFER_COMPOSE=docker-compose
	else
		COFFER_COMPOSE="docker compose"
	fi
fi
export COFFER_COMPOSE
export COMPOSE_PROJECT_NAME=coffer-e2e-$$
export COFFER1_PORT=${COFFER1_PORT:-17700} COFFER2_PORT=${COFFER2_PORT:-17710} COFFER3_PORT=${COFFER3_PORT:-17720}

cleanup() {
	local rc=$?
	set +e
	# Containers the tests started by hand first (they hold the networks).
	local extra
	extra=$(docker ps -aq --filter "label=coffer.e2e=${COMPOSE_PROJECT_NAME}" 2>/dev/null)
	[[ -n $extra ]] && docker rm -f -v $extra >/dev/null 2>&1
	for p in "$COMPOSE_PROJECT_NAME" "$COMPOSE_PROJECT_NAME-dr"; do
		$COFFER_COMPOSE -p "$p" -f docker-compose.yml down -v -t 5 >/dev/null 2>&1
	done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "--- make docker" >&2
make docker

echo "--- go test -tags docker ./e2e/docker ($COFFER_COMPOSE, project $COMPOSE_PROJECT_NAME, ports $COFFER1_PORT/$COFFER2_PORT/$COFFER3_PORT)" >&2
# shellcheck disable=SC2086 # GO_TEST_FLAGS is a list of flags
go test -tags docker ./e2e/docker -count=1 -v -timeout 15m ${GO_TEST_FLAGS:-}
