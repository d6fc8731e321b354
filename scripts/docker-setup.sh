#!/usr/bin/env bash
# Prepares the compose cluster: the static binary must exist (make build);
# this makes deploy/root.key and deploy/tls/ once, then the coffer:latest
# image FROM scratch (no image is pulled).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${COFFER_BIN:-bin/coffer}
IMAGE=${COFFER_IMAGE:-coffer:latest}
[[ -x $BIN ]] || { echo "docker-setup: $BIN missing; run make build" >&2; exit 1; }
mkdir -p deploy
chmod 700 deploy
if [[ ! -f deploy/root.key ]]; then
	"$BIN" operator keygen --out deploy/root.key
fi
if [[ ! -f deploy/tls/ca.pem ]]; then
	"$BIN" operator tls --out deploy/tls --nodes coffer1,coffer2,coffer3
fi
# The container reads the key files as root; the host user keeps ownership.
old_id=$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker build -q -t "$IMAGE" . >/dev/null
new_id=$(docker image inspect --format '{{.Id}}' "$IMAGE")
# Drop the image this one replaces, unless a container still uses it: each
# build would otherwise leave an untagged 17 MB image behind.
if [[ -n $old_id && $old_id != "$new_id" ]]; then
	docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "built $IMAGE; deploy/ holds the root key and TLS material (keep it private)" >&2
