//go:build docker

package dockere2e

import (
	"context"
	"encoding/json"
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
//  5. coffer operator init             (a temporary root token for the restore)
//  6. coffer snapshot restore FILE     (with the temporary token)
//  7. the snapshot's tokens work again, the temporary one is gone; node list,
//     secrets on every node, audit verify.
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
	if !a.down() {
		t.FailNow()
	}

	// 4. Fresh nodes with the same deploy/ (root key, TLS), new volumes.
	b := startCluster(t, baseProject+"-dr", false)
	h, _, err := b.health(ctx, 0)
	if err != nil || h.Initialized {
		t.Fatalf("fresh cluster: %+v %v (want not initialized)", h, err)
	}

	// 5. A temporary root token on the fresh cluster.
	out, err = b.cliAs(0, "", nil, "operator", "init", "--json")
	if err != nil {
		t.Fatalf("operator init on the fresh cluster: %v\n%s", err, out)
	}
	var initRes apitypes.InitResponse
	i, j := strings.Index(out, "{"), strings.LastIndex(out, "}")
	if i < 0 || j < i {
		t.Fatalf("operator init --json printed no JSON:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out[i:j+1]), &initRes); err != nil || initRes.RootToken == "" {
		t.Fatalf("operator init --json: %v\n%s", err, out)
	}
	tmpToken := initRes.RootToken

	// 6. Restore with it.
	out, err = b.cliAs(0, tmpToken, nil, "snapshot", "restore", file)
	if err != nil {
		t.Fatalf("snapshot restore onto the fresh cluster: %v\n%s", err, out)
	}
	t.Logf("snapshot restore: %s", strings.TrimSpace(out))

	// 7. The restored state, with the old root token; the temporary one is
	// not in it.
	b.token = oldToken
	if out, err := b.cliAs(1, tmpToken, nil, "secret", "list", "/", "--consistency", "leader"); err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("the temporary root token after the restore: %v %s (want Unauthenticated)", err, out)
	}
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
