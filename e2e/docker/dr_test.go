//go:build docker

package dockere2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
)

// TestDisasterRecovery follows the runbook of docs/OPERATIONS.md
// ("Disaster recovery: restore onto fresh nodes") step by step, with the
// commands it gives:
//
//  1. coffer snapshot save FILE        (the running cluster)
//  2. coffer snapshot inspect FILE
//  3. every node lost                  (docker-compose down -v)
//  4. fresh nodes, same root key       (another compose project, new volumes)
//  5. wait for health; no operator init
//  6. coffer snapshot restore FILE     (no token: the cluster is not initialized)
//  7. the old tokens work: node list, secrets on every node, audit verify.
func TestDisasterRecovery(t *testing.T) {
	a := startCluster(t, baseProject, true)
	ctx := context.Background()
	acks := newAckSet()
	for n := range 12 {
		a.mustCreate(acks, n%3, fmt.Sprintf("/app/prod/svc%d/password", n), []byte(fmt.Sprintf("secret-%d", n)))
	}
	// A second version of one secret: the latest must come back.
	pctx, cancel := context.WithTimeout(ctx, requestTimeout)
	res, err := a.client(0).PutSecretValue(pctx, &apitypes.PutSecretValueRequest{Path: "/app/prod/svc0/password", Value: []byte("secret-0-v2")})
	cancel()
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	acks.add("/app/prod/svc0/password", []byte("secret-0-v2"), res.Index)
	oldToken := a.token

	// 1-2. Save and inspect.
	file := filepath.Join(t.TempDir(), "coffer.snap")
	if out, err := a.cli(0, nil, "snapshot", "save", file); err != nil {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	out, err := a.cli(0, nil, "snapshot", "inspect", file)
	if err != nil || !strings.Contains(out, "(verified)") || !strings.Contains(out, "Secrets:       12") {
		t.Fatalf("snapshot inspect: %v\n%s", err, out)
	}
	t.Logf("snapshot inspect:\n%s", out)

	// 3. Disaster: every node and its volume is gone.
	a.down()

	// 4-5. Fresh nodes with the same deploy/ (root key, TLS), new volumes.
	b := startCluster(t, baseProject+"-dr", false)
	h, _, err := b.health(ctx, 0)
	if err != nil || h.Initialized {
		t.Fatalf("fresh cluster: %+v %v (want not initialized)", h, err)
	}

	// 6. Restore, without a token.
	out, err = b.cliAs(0, "", nil, "snapshot", "restore", file)
	if err != nil {
		if strings.Contains(out, "Unauthenticated") || strings.Contains(out, "another cluster") {
			knownBug(t, "a snapshot can't be restored onto fresh nodes (DR runbook step 6): `coffer snapshot restore` without a token on an uninitialized cluster answers %q; "+
				"with a token from `operator init` it answers FailedPrecondition \"snapshot is from another cluster\" (api/sys.go serveRestore needs a token; node/snapshot.go RestoreSnapshot compares the cluster id the leader sets on first election)",
				strings.TrimSpace(out))
		}
		t.Fatalf("snapshot restore: %v\n%s", err, out)
	}
	t.Logf("snapshot restore: %s", strings.TrimSpace(out))

	// 7. The restored state, with the old root token.
	b.token = oldToken
	b.waitVoters(ctx, 3)
	b.verify(acks, 0, apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader})
	// Every node has the restored state: read at the leader's applied index.
	li := b.waitLeader(ctx, []int{0, 1, 2})
	lh, _, err := b.health(ctx, li)
	if err != nil {
		t.Fatalf("health of the leader: %v", err)
	}
	for i := range b.nodes {
		b.verify(acks, i, apitypes.ReadOptions{MinIndex: lh.AppliedIndex})
	}
	if out, err := b.cli(1, nil, "audit", "verify"); err != nil || !strings.HasPrefix(out, "OK") {
		t.Errorf("audit verify after restore: %v\n%s", err, out)
	}
	if out, err := b.cli(2, nil, "secret", "get", "/app/prod/svc0/password", "--min-index", "1"); err != nil || out != "secret-0-v2" {
		t.Errorf("secret get after restore: %v %q", err, out)
	}
}
