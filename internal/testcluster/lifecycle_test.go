package testcluster_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// tcStoredVersion returns a copy of the stored ciphertext and wrapped DEK of
// path's version v in node i's applied state.
func tcStoredVersion(t *testing.T, c *testcluster.Cluster, i int, path string, v uint64) (ct, dek []byte) {
	t.Helper()
	sec, ok := c.Nodes[i].Node().State().Secret(path)
	if !ok {
		t.Fatalf("node %d: %s not in state", i, path)
	}
	ver := sec.Version(v)
	if ver == nil {
		t.Fatalf("node %d: %s has no version %d in state", i, path, v)
	}
	return bytes.Clone(ver.Ciphertext), bytes.Clone(ver.WrappedDEK)
}

func tcSnapshot(ctx context.Context, t *testing.T, cl *client.Client) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := cl.Snapshot(ctx, &buf); err != nil {
		t.Fatalf("%s: snapshot: %v", cl.Addr(), err)
	}
	if buf.Len() == 0 {
		t.Fatalf("%s: empty snapshot", cl.Addr())
	}
	return buf.Bytes()
}

func tcVersionState(vs []apitypes.Version, v uint64) string {
	for _, x := range vs {
		if x.Version == v {
			return x.State
		}
	}
	return "<missing>"
}

// TestClusterDestroyVersionIsGoneEverywhere: a destroyed version is Gone on every
// node, its metadata stays, other versions stay readable, and its material
// is erased from the state and from every later snapshot.
func TestClusterDestroyVersionIsGoneEverywhere(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	w := c.Client(f[0])
	const path = "/destroy/app/key"

	if _, err := w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("value-one")}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"value-two", "value-three"} {
		if _, err := w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	min := tcLeaderIndex(c)
	for _, cl := range tcAllClients(c) {
		tcMustValue(ctx, t, cl, path, 2, min, "value-two")
	}
	// Capture version 2's material as stored, before destroying it.
	oldCT, oldDEK := tcStoredVersion(t, c, c.Leader(), path, 2)
	if len(oldCT) == 0 || len(oldDEK) == 0 {
		t.Fatalf("version 2 has no stored ciphertext (%d bytes) or wrapped DEK (%d bytes)", len(oldCT), len(oldDEK))
	}
	v3CT, _ := tcStoredVersion(t, c, c.Leader(), path, 3)

	d, err := c.Client(f[1]).DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: path, Version: 2})
	if err != nil {
		t.Fatalf("destroy v2: %v", err)
	}
	if d.Index == 0 {
		t.Fatal("destroy answer carries no index")
	}
	for i, cl := range tcAllClients(c) {
		_, err := tcGet(ctx, t, cl, path, 2, d.Index)
		tcWantCode(t, err, errs.Gone, "node "+c.Nodes[i].ID+": read destroyed v2")
		s := tcMustDescribe(ctx, t, cl, path, d.Index).Secret
		if got := tcVersionState(s.Versions, 2); got != apitypes.StateDestroyed {
			t.Fatalf("node %d: v2 state %q, want destroyed", i, got)
		}
		if tcVersionState(s.Versions, 1) != apitypes.StateEnabled || tcVersionState(s.Versions, 3) != apitypes.StateEnabled {
			t.Fatalf("node %d: v1/v3 states %q/%q, want enabled", i, tcVersionState(s.Versions, 1), tcVersionState(s.Versions, 3))
		}
		if s.CurrentVersion != 3 || len(s.Versions) != 3 {
			t.Fatalf("node %d: current_version %d, %d versions; want 3, 3", i, s.CurrentVersion, len(s.Versions))
		}
		tcMustValue(ctx, t, cl, path, 1, d.Index, "value-one")
		tcMustValue(ctx, t, cl, path, 3, d.Index, "value-three")
		tcMustValue(ctx, t, cl, path, 0, d.Index, "value-three")
	}
	// Erased from the state of every node...
	for i, tn := range c.Nodes {
		sec, ok := tn.Node().State().Secret(path)
		if !ok {
			t.Fatalf("node %d: secret missing", i)
		}
		v := sec.Version(2)
		if v == nil || !v.Destroyed || v.Ciphertext != nil || v.WrappedDEK != nil {
			t.Fatalf("node %d: destroyed v2 in state: %+v (ciphertext and wrapped DEK must be nil)", i, v)
		}
		if sec.Version(3).Ciphertext == nil {
			t.Fatalf("node %d: v3 lost its ciphertext", i)
		}
	}
	// ...and from a fresh snapshot of every node.
	for i, cl := range tcAllClients(c) {
		snap := tcSnapshot(ctx, t, cl)
		if !bytes.Contains(snap, v3CT) {
			t.Fatalf("node %d: snapshot lacks v3's ciphertext: the search below would prove nothing", i)
		}
		if bytes.Contains(snap, oldCT) {
			t.Fatalf("node %d: snapshot still contains destroyed v2's ciphertext", i)
		}
		if bytes.Contains(snap, oldDEK) {
			t.Fatalf("node %d: snapshot still contains destroyed v2's wrapped DEK", i)
		}
	}

	// Destroying the current version moves current_version down; with no
	// enabled version left, a read without version is NotFound.
	d, err = w.DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: path, Version: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range tcAllClients(c) {
		if s := tcMustDescribe(ctx, t, cl, path, d.Index).Secret; s.CurrentVersion != 1 {
			t.Fatalf("%s: current_version %d after destroying v3, want 1", cl.Addr(), s.CurrentVersion)
		}
		tcMustValue(ctx, t, cl, path, 0, d.Index, "value-one")
	}
	d, err = w.DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: path, Version: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range tcAllClients(c) {
		_, err := tcGet(ctx, t, cl, path, 0, d.Index)
		tcWantCode(t, err, errs.NotFound, cl.Addr()+": read current with every version destroyed")
		_, err = tcGet(ctx, t, cl, path, 1, d.Index)
		tcWantCode(t, err, errs.Gone, cl.Addr()+": read destroyed v1")
		if s := tcMustDescribe(ctx, t, cl, path, d.Index).Secret; s.CurrentVersion != 0 || len(s.Versions) != 3 {
			t.Fatalf("%s: current_version %d, %d versions; want 0 and 3 (history stays)", cl.Addr(), s.CurrentVersion, len(s.Versions))
		}
	}
}

// TestClusterPathReuse: deleting a secret and creating the same path gives a new
// uid, and nothing of the old secret's versions is readable or stored.
func TestClusterPathReuse(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	a, b := c.Client(f[0]), c.Client(f[1])
	const path = "/reuse/app/token"

	cr, err := a.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("old-one")})
	if err != nil {
		t.Fatal(err)
	}
	oldUID := cr.Secret.UID
	if len(oldUID) != 32 {
		t.Fatalf("uid %q: want 128-bit hex", oldUID)
	}
	if _, err := a.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("old-two")}); err != nil {
		t.Fatal(err)
	}
	min := tcLeaderIndex(c)
	for _, cl := range tcAllClients(c) {
		tcMustValue(ctx, t, cl, path, 2, min, "old-two")
	}
	oldCT1, oldDEK1 := tcStoredVersion(t, c, c.Leader(), path, 1)
	oldCT2, _ := tcStoredVersion(t, c, c.Leader(), path, 2)

	del, err := b.DeleteSecret(ctx, &apitypes.DeleteSecretRequest{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	for i, cl := range tcAllClients(c) {
		_, err := tcGet(ctx, t, cl, path, 0, del.Index)
		tcWantCode(t, err, errs.NotFound, "node "+c.Nodes[i].ID+": read deleted secret")
		_, err = tcGet(ctx, t, cl, path, 1, del.Index)
		tcWantCode(t, err, errs.NotFound, "node "+c.Nodes[i].ID+": read deleted secret's v1")
		_, err = cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: del.Index}})
		tcWantCode(t, err, errs.NotFound, "node "+c.Nodes[i].ID+": describe deleted secret")
	}

	cr2, err := b.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("new-one")})
	if err != nil {
		t.Fatal(err)
	}
	if cr2.Secret.UID == "" || cr2.Secret.UID == oldUID {
		t.Fatalf("re-created path has uid %q, old uid %q: want a new uid", cr2.Secret.UID, oldUID)
	}
	if cr2.Version != 1 {
		t.Fatalf("re-created secret's first version is %d, want 1", cr2.Version)
	}
	for i, cl := range tcAllClients(c) {
		got := tcMustValue(ctx, t, cl, path, 1, cr2.Index, "new-one")
		if got.UID != cr2.Secret.UID {
			t.Fatalf("node %d: value's uid %q, want the new uid %q", i, got.UID, cr2.Secret.UID)
		}
		tcMustValue(ctx, t, cl, path, 0, cr2.Index, "new-one")
		_, err := tcGet(ctx, t, cl, path, 2, cr2.Index)
		tcWantCode(t, err, errs.NotFound, "node "+c.Nodes[i].ID+": old v2 after re-create")
		s := tcMustDescribe(ctx, t, cl, path, cr2.Index).Secret
		if s.UID != cr2.Secret.UID || s.CurrentVersion != 1 || len(s.Versions) != 1 {
			t.Fatalf("node %d: describe after re-create: uid %q current %d versions %d; want %q, 1, 1", i, s.UID, s.CurrentVersion, len(s.Versions), cr2.Secret.UID)
		}
	}
	// The old versions' material is gone from the state and snapshots.
	for i, tn := range c.Nodes {
		sec, _ := tn.Node().State().Secret(path)
		if sec == nil || len(sec.Versions) != 1 || bytes.Equal(sec.Versions[0].Ciphertext, oldCT1) {
			t.Fatalf("node %d: state after re-create: %+v", i, sec)
		}
	}
	for i, cl := range tcAllClients(c) {
		snap := tcSnapshot(ctx, t, cl)
		for name, needle := range map[string][]byte{"v1 ciphertext": oldCT1, "v1 wrapped DEK": oldDEK1, "v2 ciphertext": oldCT2} {
			if bytes.Contains(snap, needle) {
				t.Fatalf("node %d: snapshot after delete contains the deleted secret's %s", i, name)
			}
		}
	}
}
