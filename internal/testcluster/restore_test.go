package testcluster_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

func restoreRaw(t *testing.T, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/sys/restore", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

// Restoring a snapshot brings the data back on every node, the audit chain
// goes on (no rewind), and a corrupt file changes nothing.
func TestRestoreSnapshotKeepsAuditChain(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := c.Followers()
	cl := c.Client(f[0])
	if _, err := cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/r/a", Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := cl.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/r/a", Value: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/r/b"}); err != nil {
		t.Fatal(err)
	}
	headBefore := c.Nodes[c.Leader()].Node().State().AuditHead.Seq

	// A corrupt file is refused and changes nothing.
	bad := append([]byte(nil), snap.Bytes()...)
	bad[len(bad)/2] ^= 0xff
	if st, body := restoreRaw(t, c.Nodes[f[1]].URL, c.RootToken, bad); st != http.StatusBadRequest {
		t.Fatalf("corrupt snapshot: %d %s", st, body)
	}
	// Restore through a follower.
	st, body := restoreRaw(t, c.Nodes[f[1]].URL, c.RootToken, snap.Bytes())
	if st != http.StatusOK {
		t.Fatalf("restore: %d %s", st, body)
	}
	idx := c.Nodes[c.Leader()].Node().State().Index
	for i := range c.Nodes {
		ci := c.Client(i)
		got, err := ci.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/r/a", ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
		if err != nil || string(got.Value) != "before" || got.Version != 1 {
			t.Fatalf("node %d after restore: %+v %v", i, got, err)
		}
		if _, err := ci.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: "/r/b", ReadOptions: apitypes.ReadOptions{MinIndex: idx}}); errs.CodeOf(err) != errs.NotFound {
			t.Fatalf("node %d: /r/b should be gone after restore: %v", i, err)
		}
		v, err := ci.VerifyAudit(ctx, &apitypes.VerifyAuditRequest{ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
		if err != nil || !v.OK || v.LastSeq <= headBefore {
			t.Fatalf("node %d audit after restore: %+v %v (head before %d)", i, v, err, headBefore)
		}
	}
	q, err := cl.QueryAudit(ctx, &apitypes.QueryAuditRequest{Actions: []string{"sys.restore"}, ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
	if err != nil || len(q.Entries) != 2 || q.Entries[0].Result != "error" || q.Entries[1].Result != "ok" {
		t.Fatalf("sys.restore audit entries: %+v %v", q, err)
	}
}

// Disaster recovery: a snapshot of one cluster restores into a fresh
// cluster under the same root key; a non-fresh foreign cluster refuses it.
func TestRestoreIntoFreshClusterWithSameRootKey(t *testing.T) {
	a := testcluster.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca := a.Client(a.Leader())
	if _, err := ca.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/dr/x", Value: []byte("precious")}); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if err := ca.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	b := testcluster.New(t, 3, testcluster.Options{RootKeyLine: a.RootKeyLine})
	if st, body := restoreRaw(t, b.Nodes[0].URL, b.RootToken, snap.Bytes()); st != http.StatusOK {
		t.Fatalf("restore into fresh cluster: %d %s", st, body)
	}
	// The old cluster's tokens come back with its data.
	cb := b.ClientWithToken(b.Leader(), a.RootToken)
	got, err := cb.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/dr/x", ReadOptions: apitypes.ReadOptions{Consistency: "leader"}})
	if err != nil || string(got.Value) != "precious" {
		t.Fatalf("after DR restore: %+v %v", got, err)
	}
	// Now b holds data: a snapshot of another cluster is refused.
	other := testcluster.New(t, 1, testcluster.Options{RootKeyLine: a.RootKeyLine})
	var snap2 bytes.Buffer
	if err := other.Client(0).Snapshot(ctx, &snap2); err != nil {
		t.Fatal(err)
	}
	if st, body := restoreRaw(t, b.Nodes[0].URL, a.RootToken, snap2.Bytes()); st != http.StatusConflict {
		t.Fatalf("foreign snapshot into a cluster with data: %d %s", st, body)
	}
}
