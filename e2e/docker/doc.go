// Package dockere2e holds Coffer's system tests against the docker-compose
// cluster of the repository root (docker-compose.yml): three coffer:latest
// containers with mutual TLS, killed, partitioned and restarted with the
// docker CLI while clients write through the published API ports.
//
// The tests carry the build tag `docker`, so `go test ./...` skips them. Run
// them with e2e/docker/run.sh, which builds the binary, the image and the
// TLS material (`make docker`), runs
//
//	go test -tags docker ./e2e/docker -count=1 -v -timeout 15m
//
// and always brings the compose projects down at the end.
//
// Settings (environment; run.sh sets them):
//
//	COMPOSE_PROJECT_NAME  base compose project name (default coffer-e2e-<pid>)
//	COFFER_COMPOSE        compose command ("docker-compose" or "docker compose")
//	COFFER1_PORT..COFFER3_PORT  host ports of the three APIs (default 7700/7710/7720)
//	COFFER_DEPLOY_DIR     root key and TLS material (default <repo>/deploy)
//	COFFER_IMAGE          image (default coffer:latest)
//	COFFER_BIN            CLI binary on the host (default <repo>/bin/coffer)
package dockere2e
