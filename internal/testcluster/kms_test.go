package testcluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/api"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
	"github.com/cofferhq/coffer/kms"
	"github.com/cofferhq/coffer/node"
)

// KMS lifecycle on a 3-node cluster (issue 4). Helpers are prefixed kmsT to
// stay out of the other test files' way.

func kmsTCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func kmsTCode(t *testing.T, err error, code errs.Code, what string, parts ...string) {
	t.Helper()
	if errs.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("%s: error %q does not mention %q", what, err, p)
		}
	}
}

func kmsTMust[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func kmsTValue(ctx context.Context, t *testing.T, cl *client.Client, path string, version, minIndex uint64, want string) {
	t.Helper()
	got, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, Version: version, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
	if err != nil {
		t.Fatalf("read %s v%d on %s: %v", path, version, cl.Addr(), err)
	}
	if string(got.Value) != want {
		t.Fatalf("read %s v%d: %q, want %q", path, version, got.Value, want)
	}
}

// kmsTMetric scrapes node i's /metrics and returns the line of name.
func kmsTMetric(t *testing.T, c *testcluster.Cluster, i int, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	api.MetricsHandler(c.Nodes[i].Node()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	t.Fatalf("metric %s missing from node %d", name, i)
	return ""
}

func kmsTHealthWarnings(c *testcluster.Cluster, i int) []string {
	h, _ := c.Nodes[i].Node().Health()
	return h.Warnings
}

func kmsTHasWarning(ws []string, part string) bool {
	for _, w := range ws {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

func TestKMSRotateDisableAndInactiveMonitor(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := kmsTCtx(t)
	f := c.Followers()
	w, r := c.Client(f[0]), c.Client(f[1])

	created := kmsTMust[*apitypes.CreateKeyResponse](t, "createKey")(w.CreateKey(ctx, &apitypes.CreateKeyRequest{Name: "app", Description: "app secrets"}))
	if created.Key.State != apitypes.KeyStateEnabled || created.Key.CurrentVersion != 1 {
		t.Fatalf("created %+v", created.Key)
	}
	kmsTMust[*apitypes.CreateSecretResponse](t, "createSecret")(w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/kms/a", KMSKey: "app", Value: []byte("one")}))
	kmsTMust[*apitypes.CreateSecretResponse](t, "createSecret")(w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/kms/b", Value: []byte("other")}))

	// Rotate through the other follower; new versions use the new key version.
	rot := kmsTMust[*apitypes.RotateKeyResponse](t, "rotateKey")(r.RotateKey(ctx, &apitypes.RotateKeyRequest{Name: "app"}))
	if rot.Key.CurrentVersion != 2 || len(rot.Key.Versions) != 2 {
		t.Fatalf("rotated %+v", rot.Key)
	}
	// New versions written on a node use the newest key version it has
	// applied: read your writes (min_index) before writing elsewhere.
	kmsTMust[*apitypes.DescribeKeyResponse](t, "describeKey")(w.DescribeKey(ctx, &apitypes.DescribeKeyRequest{Name: "app", ReadOptions: apitypes.ReadOptions{MinIndex: rot.Index}}))
	put := kmsTMust[*apitypes.PutSecretValueResponse](t, "put")(w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/kms/a", Value: []byte("two")}))
	kmsTValue(ctx, t, r, "/kms/a", 1, put.Index, "one")
	kmsTValue(ctx, t, r, "/kms/a", 2, put.Index, "two")
	desc := kmsTMust[*apitypes.DescribeSecretResponse](t, "describe")(r.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: "/kms/a", ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}}))
	if v := desc.Secret.Versions; v[0].KMSKeyVersion != 1 || v[1].KMSKeyVersion != 2 || v[1].KMSKey != "app" {
		t.Fatalf("versions %+v", v)
	}
	dk := kmsTMust[*apitypes.DescribeKeyResponse](t, "describeKey")(r.DescribeKey(ctx, &apitypes.DescribeKeyRequest{Name: "app", ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}}))
	if dk.Key.BoundSecrets != 1 || dk.Key.CurrentVersion != 2 || dk.Key.Description != "app secrets" {
		t.Fatalf("describeKey %+v", dk.Key)
	}

	// Disable: reads and writes fail everywhere, naming the key and its state.
	dis := kmsTMust[*apitypes.KeyResponse](t, "disableKey")(r.DisableKey(ctx, &apitypes.DisableKeyRequest{Name: "app"}))
	if dis.Key.State != apitypes.KeyStateDisabled {
		t.Fatalf("disabled %+v", dis.Key)
	}
	for i := range c.Nodes {
		cl := c.Client(i)
		_, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/kms/a", ReadOptions: apitypes.ReadOptions{MinIndex: dis.Index}})
		kmsTCode(t, err, errs.FailedPrecondition, fmt.Sprintf("read on node %d", i), `"app"`, "disabled")
		_, err = cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/kms/a", Value: []byte("x")})
		kmsTCode(t, err, errs.FailedPrecondition, fmt.Sprintf("write on node %d", i), `"app"`, "disabled")
		_, err = cl.GenerateSecret(ctx, &apitypes.GenerateSecretRequest{Path: "/kms/a"})
		kmsTCode(t, err, errs.FailedPrecondition, fmt.Sprintf("generate on node %d", i), `"app"`, "disabled")
		// The other secret is unaffected.
		kmsTValue(ctx, t, cl, "/kms/b", 0, dis.Index, "other")

		ls := kmsTMust[*apitypes.ListSecretsResponse](t, "list inactive")(cl.ListSecrets(ctx, &apitypes.ListSecretsRequest{
			Prefix: "/", Recursive: true, KeyState: apitypes.KeyStateInactive, ReadOptions: apitypes.ReadOptions{MinIndex: dis.Index}}))
		if len(ls.Secrets) != 1 || ls.Secrets[0].Path != "/kms/a" {
			t.Fatalf("node %d: inactive listing %+v", i, ls.Secrets)
		}
		if got := kmsTMetric(t, c, i, "coffer_secrets_bound_to_inactive_key"); got != "coffer_secrets_bound_to_inactive_key 1" {
			t.Fatalf("node %d: %s", i, got)
		}
		if ws := kmsTHealthWarnings(c, i); !kmsTHasWarning(ws, "1 secrets are bound to keys that are not enabled") {
			t.Fatalf("node %d: health warnings %q", i, ws)
		}
	}
	// The refusals are audited, naming the key.
	q := kmsTMust[*apitypes.QueryAuditResponse](t, "queryAudit")(r.QueryAudit(ctx, &apitypes.QueryAuditRequest{
		Actions: []string{"secrets.get_value", "secrets.put_value", "kms.disable_key", "kms.rotate_key", "kms.create_key"}, PathPrefix: "", Limit: 1000,
		ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}}))
	refusedReads, refusedWrites, keyEvents := 0, 0, map[string]bool{}
	for _, e := range q.Entries {
		if e.Result == apitypes.ResultError && e.ErrorCode == string(errs.FailedPrecondition) && e.Path == "/kms/a" {
			switch e.Action {
			case "secrets.get_value":
				refusedReads++
			case "secrets.put_value":
				refusedWrites++
			}
		}
		if strings.HasPrefix(e.Action, "kms.") && e.KMSKey == "app" && e.Result == apitypes.ResultOK {
			keyEvents[e.Action] = true
		}
	}
	if refusedReads != 3 || refusedWrites != 3 || len(keyEvents) != 3 {
		t.Fatalf("audit: %d refused reads, %d refused writes (want 3 each), key events %v", refusedReads, refusedWrites, keyEvents)
	}

	// Enable again: everything is readable and the monitor is back to 0.
	en := kmsTMust[*apitypes.KeyResponse](t, "enableKey")(w.EnableKey(ctx, &apitypes.EnableKeyRequest{Name: "app"}))
	kmsTValue(ctx, t, r, "/kms/a", 1, en.Index, "one")
	c.Eventually(5*time.Second, "metric back to 0", func() bool {
		return kmsTMetric(t, c, f[1], "coffer_secrets_bound_to_inactive_key") == "coffer_secrets_bound_to_inactive_key 0"
	})
}

func TestKMSDeletionRebindAndDestroy(t *testing.T) {
	var skew atomic.Int64
	c := testcluster.New(t, 3, testcluster.Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	ctx := kmsTCtx(t)
	f := c.Followers()
	w, r := c.Client(f[0]), c.Client(f[1])

	kmsTMust[*apitypes.CreateKeyResponse](t, "createKey")(w.CreateKey(ctx, &apitypes.CreateKeyRequest{Name: "old"}))
	kmsTMust[*apitypes.CreateKeyResponse](t, "createKey")(w.CreateKey(ctx, &apitypes.CreateKeyRequest{Name: "doomed"}))
	kmsTMust[*apitypes.CreateSecretResponse](t, "create")(w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/d/1", KMSKey: "old", Value: []byte("v1")}))
	kmsTMust[*apitypes.CreateSecretResponse](t, "create")(w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/d/2", KMSKey: "old", Value: []byte("a")}))
	kmsTMust[*apitypes.PutSecretValueResponse](t, "put")(w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/d/2", Value: []byte("b")}))
	last := kmsTMust[*apitypes.CreateSecretResponse](t, "create")(w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/d/x", KMSKey: "doomed", Value: []byte("lost")}))

	// Refused while bound, naming the count.
	_, err := r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "old", PendingDays: 7})
	kmsTCode(t, err, errs.FailedPrecondition, "schedule while bound", `"old"`, "2 secret")
	_, err = r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "default", PendingDays: 7, Force: true})
	kmsTCode(t, err, errs.FailedPrecondition, "schedule default", "default")
	_, err = r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "old", PendingDays: 3})
	kmsTCode(t, err, errs.InvalidArgument, "pending_days 3")

	// Find the bound secrets, a page at a time, on a follower.
	var bound []string
	req := &apitypes.ListKeyBindingsRequest{Name: "old", PageSize: 1, ReadOptions: apitypes.ReadOptions{MinIndex: last.Index}}
	for {
		page := kmsTMust[*apitypes.ListKeyBindingsResponse](t, "bindings")(r.ListKeyBindings(ctx, req))
		bound = append(bound, page.Paths...)
		if page.NextPageToken == "" {
			break
		}
		req.PageToken = page.NextPageToken
	}
	if fmt.Sprint(bound) != "[/d/1 /d/2]" {
		t.Fatalf("bindings %v", bound)
	}
	// Rebind them (on the other follower); values stay readable everywhere.
	var idx uint64
	for _, p := range bound {
		rb := kmsTMust[*apitypes.RebindSecretKeyResponse](t, "rebind")(w.RebindSecretKey(ctx, &apitypes.RebindSecretKeyRequest{Path: p, KMSKey: "default"}))
		if rb.Secret.KMSKey != "default" {
			t.Fatalf("rebound %+v", rb.Secret)
		}
		idx = rb.Index
	}
	kmsTValue(ctx, t, r, "/d/1", 0, idx, "v1")
	kmsTValue(ctx, t, r, "/d/2", 1, idx, "a")
	kmsTValue(ctx, t, r, "/d/2", 2, idx, "b")
	d := kmsTMust[*apitypes.DescribeSecretResponse](t, "describe")(r.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: "/d/2", ReadOptions: apitypes.ReadOptions{MinIndex: idx}}))
	for _, v := range d.Secret.Versions {
		if v.KMSKey != "default" {
			t.Fatalf("version %d still on %s", v.Version, v.KMSKey)
		}
	}
	q := kmsTMust[*apitypes.QueryAuditResponse](t, "audit")(r.QueryAudit(ctx, &apitypes.QueryAuditRequest{PathPrefix: "/d/1", Limit: 100,
		ReadOptions: apitypes.ReadOptions{MinIndex: idx}}))
	events := map[string]string{}
	for _, e := range q.Entries {
		if e.RequestID == q.Entries[len(q.Entries)-1].RequestID || e.Action == "secrets.rebind_key" {
			events[e.Action] = e.KMSKey
		}
	}
	if events["secrets.rebind_key"] != "default" {
		t.Fatalf("rebind audit %v", events)
	}

	// Now the deletion is allowed; the forced one makes its secret unusable.
	sched := kmsTMust[*apitypes.ScheduleKeyDeletionResponse](t, "schedule")(r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "old", PendingDays: 7}))
	if sched.Key.State != apitypes.KeyStatePendingDeletion || sched.Key.DeletionDate == nil ||
		sched.Key.DeletionDate.Before(time.Now().Add(7*24*time.Hour-time.Minute)) {
		t.Fatalf("scheduled %+v", sched.Key)
	}
	forced := kmsTMust[*apitypes.ScheduleKeyDeletionResponse](t, "schedule forced")(r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "doomed", PendingDays: 7, Force: true}))
	_, err = r.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/d/x", ReadOptions: apitypes.ReadOptions{MinIndex: forced.Index}})
	kmsTCode(t, err, errs.FailedPrecondition, "read pending", `"doomed"`, "pending_deletion")

	// Cancel and schedule again: cancel leaves the key disabled.
	cn := kmsTMust[*apitypes.KeyResponse](t, "cancel")(w.CancelKeyDeletion(ctx, &apitypes.CancelKeyDeletionRequest{Name: "old"}))
	if cn.Key.State != apitypes.KeyStateDisabled || cn.Key.DeletionDate != nil {
		t.Fatalf("canceled %+v", cn.Key)
	}
	kmsTMust[*apitypes.ScheduleKeyDeletionResponse](t, "schedule again")(r.ScheduleKeyDeletion(ctx, &apitypes.ScheduleKeyDeletionRequest{Name: "old", PendingDays: 7}))

	// The material that must disappear.
	leader := c.Nodes[c.Leader()].Node()
	var blobs [][]byte
	for _, name := range []string{"old", "doomed"} {
		k, _ := leader.State().Key(name)
		for _, v := range k.Versions {
			blobs = append(blobs, append([]byte(nil), v.Wrapped...))
		}
	}
	// Nothing happens before the date.
	time.Sleep(300 * time.Millisecond) // a few timer ticks, to show they do nothing
	if k, _ := leader.State().Key("old"); k.State != "pending_deletion" {
		t.Fatalf("destroyed early: %s", k.State)
	}
	// Advance every node's clock past the deletion date: the leader's timer
	// commits the destruction.
	skew.Store(int64(7*24*time.Hour + time.Minute))
	c.Eventually(10*time.Second, "keys destroyed on every node", func() bool {
		for _, tn := range c.Nodes {
			for _, name := range []string{"old", "doomed"} {
				if k, ok := tn.Node().State().Key(name); !ok || k.State != "destroyed" {
					return false
				}
			}
		}
		return true
	})
	for i, tn := range c.Nodes {
		for _, name := range []string{"old", "doomed"} {
			k, _ := tn.Node().State().Key(name)
			for _, v := range k.Versions {
				if v.Wrapped != nil {
					t.Fatalf("node %d: %s v%d still has material", i, name, v.Version)
				}
			}
		}
	}
	dk := kmsTMust[*apitypes.DescribeKeyResponse](t, "describeKey")(r.DescribeKey(ctx, &apitypes.DescribeKeyRequest{Name: "doomed", ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}}))
	if dk.Key.State != apitypes.KeyStateDestroyed || dk.Key.Versions[0].State != "destroyed" || dk.Key.BoundSecrets != 1 || dk.Key.CreatedAt.IsZero() {
		t.Fatalf("destroyed key metadata %+v", dk.Key)
	}
	_, err = r.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/d/x", ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}})
	kmsTCode(t, err, errs.FailedPrecondition, "read destroyed", `"doomed"`, "destroyed")
	kmsTValue(ctx, t, r, "/d/1", 0, 0, "v1") // rebound secrets are fine

	// A fresh snapshot (from a follower) has no trace of the material.
	var snap bytes.Buffer
	if err := r.Snapshot(ctx, &snap); err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if bytes.Contains(snap.Bytes(), b) {
			t.Fatal("destroyed key material is in a fresh snapshot")
		}
	}
	// The destruction is audited as the system's.
	qa := kmsTMust[*apitypes.QueryAuditResponse](t, "audit")(r.QueryAudit(ctx, &apitypes.QueryAuditRequest{Actions: []string{"kms.destroy_key"}, Limit: 10,
		ReadOptions: apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}}))
	got := map[string]bool{}
	for _, e := range qa.Entries {
		if e.Principal.Accessor != "system" || e.Result != apitypes.ResultOK {
			t.Fatalf("destroy entry %+v", e)
		}
		got[e.KMSKey] = true
	}
	if !got["old"] || !got["doomed"] || len(qa.Entries) != 2 {
		t.Fatalf("destroy entries %+v", qa.Entries)
	}
}

// kmsTWriteRootFile writes a root key file with lines (newest last) and
// loads it as the nodes will.
func kmsTWriteRootFile(t *testing.T, path string, lines ...string) *kms.RootKeys {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rk, err := kms.LoadRootKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return rk
}

func TestKMSRootKeyRotation(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := kmsTCtx(t)
	cl := c.Client(c.Followers()[0])
	kmsTMust[*apitypes.CreateKeyResponse](t, "createKey")(cl.CreateKey(ctx, &apitypes.CreateKeyRequest{Name: "k"}))
	values := map[string]string{"/r/default": "d1", "/r/k": "k1"}
	kmsTMust[*apitypes.CreateSecretResponse](t, "create")(cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/r/default", Value: []byte("d1")}))
	kmsTMust[*apitypes.CreateSecretResponse](t, "create")(cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/r/k", KMSKey: "k", Value: []byte("k1")}))
	kmsTMust[*apitypes.RotateKeyResponse](t, "rotate")(cl.RotateKey(ctx, &apitypes.RotateKeyRequest{Name: "k"}))
	put := kmsTMust[*apitypes.PutSecretValueResponse](t, "put")(cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/r/k", Value: []byte("k2")}))
	// Every node snapshots now, so its latest snapshot holds material wrapped
	// by the old root key: the re-wrap must be persisted before the old key
	// can go.
	for i, tn := range c.Nodes {
		if err := c.Client(i).Do(ctx, "describeKey", &apitypes.DescribeKeyRequest{Name: "k", ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := tn.Node().TakeSnapshot(); err != nil {
			t.Fatalf("snapshot node %d: %v", i, err)
		}
	}

	oldFP := c.RootKeys.Fingerprint()
	newLine, err := kms.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "root.key")
	both := kmsTWriteRootFile(t, file, strings.TrimSpace(c.RootKeyLine), newLine)
	newFP := both.Fingerprint()

	// Rolling restart with old+new: the newest wraps, all unwrap.
	c.RootKeys = both
	for i := range c.Nodes {
		c.Restart(i)
		c.WaitForLeader()
	}
	c.WaitForVoters(3)
	for i := range c.Nodes {
		if ws := kmsTHealthWarnings(c, i); !kmsTHasWarning(ws, "wrapped by an older root key") {
			t.Fatalf("node %d: no re-wrap warning before the re-wrap: %q", i, ws)
		}
	}

	// An admin re-wraps everything in one change.
	rw := kmsTMust[*apitypes.RewrapResponse](t, "rewrap")(c.Client(c.Followers()[1]).Rewrap(ctx))
	if rw.RootKeyFingerprint != newFP || rw.Rewrapped != 3 {
		t.Fatalf("rewrap %+v (want fingerprint %s, 3 versions)", rw, newFP)
	}
	// Wait until no node needs the old key any more (re-wrap applied and in
	// its latest snapshot).
	c.Eventually(15*time.Second, "root key warnings to clear", func() bool {
		for i := range c.Nodes {
			if st := c.Nodes[i].Node().State(); st.Index < rw.Index {
				return false
			}
			for _, w := range kmsTHealthWarnings(c, i) {
				if strings.Contains(w, "root key") {
					return false
				}
			}
		}
		return true
	})

	// A node can no longer start with only the old root key, and says why.
	tn := c.Nodes[2]
	c.Kill(2)
	oldOnly := kmsTWriteRootFile(t, filepath.Join(t.TempDir(), "old.key"), strings.TrimSpace(c.RootKeyLine))
	_, err = node.New(node.Config{NodeID: tn.ID, DataDir: tn.DataDir, ClusterAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0", RootKeys: oldOnly})
	if err == nil || !strings.Contains(err.Error(), "wrapped by root key "+newFP) || !strings.Contains(err.Error(), oldFP) {
		t.Fatalf("start with the old key only: %v", err)
	}

	// Remove the old key from the file and restart every node with it.
	newOnly := kmsTWriteRootFile(t, file, newLine)
	c.RootKeys, c.RootKeyLine = newOnly, newLine
	for i := range c.Nodes {
		c.Kill(i)
	}
	for i := range c.Nodes {
		c.Start(i)
	}
	c.WaitForVoters(3)
	for i := range c.Nodes {
		rc := c.Client(i)
		ro := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
		for p, v := range values {
			got, err := rc.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: p, Version: 1, ReadOptions: ro})
			if err != nil {
				t.Fatalf("node %d: %s v1: %v", i, p, err)
			}
			if string(got.Value) != v {
				t.Fatalf("node %d: %s v1: %q, want %q", i, p, got.Value, v)
			}
		}
		kmsTValue(ctx, t, rc, "/r/k", 2, 0, "k2")
		if ws := kmsTHealthWarnings(c, i); kmsTHasWarning(ws, "root key") {
			t.Fatalf("node %d: warnings %q", i, ws)
		}
	}
	// And writes work under the new root key.
	kmsTMust[*apitypes.RotateKeyResponse](t, "rotate after")(c.Client(0).RotateKey(ctx, &apitypes.RotateKeyRequest{Name: "k"}))
	p := kmsTMust[*apitypes.PutSecretValueResponse](t, "put after")(c.Client(1).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/r/k", Value: []byte("k3")}))
	kmsTValue(ctx, t, c.Client(2), "/r/k", 3, p.Index, "k3")
}
