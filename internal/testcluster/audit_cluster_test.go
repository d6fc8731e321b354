package testcluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// tcAuditAll pages through queryAudit on cl (small pages, to exercise
// pagination) after the node has applied minIndex.
func tcAuditAll(t *testing.T, cl *client.Client, minIndex uint64) []apitypes.AuditEntry {
	t.Helper()
	ctx := tcCtx(t, 60*time.Second)
	var out []apitypes.AuditEntry
	tok := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("%s: queryAudit never ends", cl.Addr())
		}
		r, err := cl.QueryAudit(ctx, &apitypes.QueryAuditRequest{Limit: 37, PageToken: tok, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
		if err != nil {
			t.Fatalf("%s: queryAudit: %v", cl.Addr(), err)
		}
		out = append(out, r.Entries...)
		if r.NextPageToken == "" {
			return out
		}
		tok = r.NextPageToken
	}
}

// TestClusterAuditTrailIdentical: the audit trail is one replicated,
// gap-free, hash-chained sequence, identical on every node; entries name the
// caller and the node that received the request; no entry holds a value.
func TestClusterAuditTrailIdentical(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	l, f := c.Leader(), c.Followers()
	fwd := f[0]
	root := tcAllClients(c)

	adm, err := root[l].CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "auditor-admin", Policies: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	rdr, err := root[f[1]].CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "auditor-reader", Policies: []string{"secrets-reader"}})
	if err != nil {
		t.Fatal(err)
	}
	var values [][]byte
	val := func() []byte {
		v := []byte("AUDITVAL-" + tcRandHex(t, 12))
		values = append(values, v)
		return v
	}

	// A mix of actions through all three nodes.
	for i := range c.Nodes {
		cl := root[i]
		p := fmt.Sprintf("/audit/app/s%d", i)
		if _, err := cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: p, Value: val()}); err != nil {
			t.Fatal(err)
		}
		put, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: p, Value: val()})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tcGet(ctx, t, cl, p, 1, put.Index); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: []string{p, "/audit/app/none"}, ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}}); err != nil {
			t.Fatal(err)
		}
		tcMustDescribe(ctx, t, cl, p, put.Index)
		if _, err := cl.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/audit/"}); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.GenerateSecret(ctx, &apitypes.GenerateSecretRequest{Path: p}); err != nil {
			t.Fatal(err)
		}
		d, err := cl.DestroySecretVersion(ctx, &apitypes.DestroySecretVersionRequest{Path: p, Version: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = tcGet(ctx, t, cl, p, 1, d.Index)
		tcWantCode(t, err, errs.Gone, "read destroyed version")
		_, err = tcGet(ctx, t, cl, "/audit/app/missing", 0, 0)
		tcWantCode(t, err, errs.NotFound, "read missing secret")
		// Denied: the reader may not write.
		_, err = c.ClientWithToken(i, rdr.Token).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: p, Value: val()})
		tcWantCode(t, err, errs.PermissionDenied, "reader writes")
		if _, err := tcGet(ctx, t, c.ClientWithToken(i, rdr.Token), p, 0, d.Index); err != nil {
			t.Fatalf("reader reads on node %d: %v", i, err)
		}
	}
	// A write and a read forwarded from a follower, with the admin token.
	const fwdPath = "/audit/app/forwarded"
	if _, err := root[l].CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: fwdPath, Value: val()}); err != nil {
		t.Fatal(err)
	}
	fc := c.ClientWithToken(fwd, adm.Token)
	fput, err := fc.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: fwdPath, Value: val()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tcGet(ctx, t, fc, fwdPath, 0, fput.Index); err != nil {
		t.Fatal(err)
	}

	// Everything so far is committed at or below the leader's applied index.
	lst := c.Nodes[c.Leader()].Node().State()
	minIdx, head := lst.Index, lst.AuditHead.Seq
	if head < 50 {
		t.Fatalf("audit head seq %d: the mix produced too few entries", head)
	}
	trails := map[int][]apitypes.AuditEntry{}
	for i := range c.Nodes {
		es := tcAuditAll(t, c.ClientWithToken(i, c.RootToken), minIdx)
		if uint64(len(es)) < head {
			t.Fatalf("node %d: %d audit entries, want at least %d", i, len(es), head)
		}
		prev := audit.GenesisHash
		for k := range es {
			e := es[k]
			if e.Seq != uint64(k+1) {
				t.Fatalf("node %d: entry %d has seq %d: the trail has a gap or is out of order", i, k, e.Seq)
			}
			if e.PrevHash != prev {
				t.Fatalf("node %d: seq %d prev_hash %s, want %s", i, e.Seq, e.PrevHash, prev)
			}
			if h := audit.ComputeHash(&e); h != e.Hash {
				t.Fatalf("node %d: seq %d hash %s, recomputed %s", i, e.Seq, e.Hash, h)
			}
			prev = e.Hash
		}
		trails[i] = es[:head]
	}
	for i := 1; i < len(c.Nodes); i++ {
		for k := range trails[0] {
			a, b := tcJSON(t, trails[0][k]), tcJSON(t, trails[i][k])
			if !bytes.Equal(a, b) {
				t.Fatalf("seq %d differs between node 0 and node %d:\n%s\n%s", k+1, i, a, b)
			}
		}
	}
	for i := range c.Nodes {
		v, err := c.ClientWithToken(i, c.RootToken).VerifyAudit(ctx, &apitypes.VerifyAuditRequest{ReadOptions: apitypes.ReadOptions{MinIndex: minIdx}})
		if err != nil {
			t.Fatalf("verifyAudit on node %d: %v", i, err)
		}
		if !v.OK || v.FirstBrokenSeq != 0 || v.Checked < head {
			t.Fatalf("verifyAudit on node %d: %+v (head %d)", i, v, head)
		}
	}

	es := trails[0]
	// The forwarded write is recorded with the caller's principal and
	// address and the id of the follower that received it.
	var fwdPut, fwdEnc, fwdGet int
	for _, e := range es {
		if e.Path != fwdPath || e.Principal.Accessor != adm.Accessor {
			continue
		}
		if e.Principal.Name != "auditor-admin" || e.SourceIP != "127.0.0.1" || e.Node != c.Nodes[fwd].ID || e.Result != apitypes.ResultOK {
			t.Errorf("forwarded request's entry: %+v; want principal auditor-admin, source_ip 127.0.0.1, node %s, result ok", e, c.Nodes[fwd].ID)
		}
		switch e.Action {
		case "secrets.put_value":
			fwdPut++
			if e.Version != fput.Version {
				t.Errorf("forwarded put entry: version %d, want %d", e.Version, fput.Version)
			}
		case "kms.encrypt":
			fwdEnc++
		case "secrets.get_value":
			fwdGet++
		}
	}
	if fwdPut != 1 || fwdEnc != 1 || fwdGet != 1 {
		t.Errorf("forwarded requests: %d put_value, %d kms.encrypt, %d get_value entries; want 1 each", fwdPut, fwdEnc, fwdGet)
	}
	// Denials are audited as denied, under the reader's principal.
	denied := 0
	for _, e := range es {
		if e.Principal.Accessor == rdr.Accessor && e.Action == "secrets.put_value" {
			denied++
			if e.Result != apitypes.ResultDenied || e.ErrorCode != string(errs.PermissionDenied) {
				t.Errorf("reader's put entry: %+v; want result denied, error_code PermissionDenied", e)
			}
		}
	}
	if denied != len(c.Nodes) {
		t.Errorf("%d denied put entries for the reader, want %d", denied, len(c.Nodes))
	}
	// Each node appears as the receiving node of some entries.
	byNode := map[string]int{}
	for _, e := range es {
		byNode[e.Node]++
	}
	for _, tn := range c.Nodes {
		if byNode[tn.ID] == 0 {
			t.Errorf("no audit entry names node %s, which received requests (%v)", tn.ID, byNode)
		}
	}
	// No entry contains a value, in any encoding.
	all := tcJSON(t, es)
	for _, v := range values {
		for _, n := range tcEncodings("value", v) {
			if bytes.Contains(all, n.b) {
				t.Errorf("audit entries contain %s (%s)", n.name, v)
			}
		}
	}
	for _, tok := range []string{c.RootToken, adm.Token, rdr.Token} {
		if bytes.Contains(all, []byte(tok)) {
			t.Errorf("audit entries contain a token")
		}
	}
	// Sanity: the JSON does hold what we searched in (paths are there).
	if !bytes.Contains(all, []byte(fwdPath)) {
		t.Fatal("audit JSON lacks the forwarded path: the search above proves nothing")
	}
	var back []apitypes.AuditEntry
	if err := json.Unmarshal(all, &back); err != nil || len(back) != len(es) {
		t.Fatalf("audit entries JSON round trip: %v", err)
	}
}
