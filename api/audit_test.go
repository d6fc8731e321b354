package api

import (
	"math"
	"net/http"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
)

// TestVerifyAuditHeadHash: a node's local audit store rewritten from one
// entry on, with every later hash recomputed, chains perfectly; verifyAudit
// must still refuse it, because the chain no longer ends at the replicated
// head's hash.
func TestVerifyAuditHeadHash(t *testing.T) {
	ds := startDev(t)
	for _, p := range []string{"/app/a", "/app/b", "/app/c"} {
		if a := ds.call(t, "createSecret", map[string]any{"path": p, "value": "djE="}, nil); a.Status != http.StatusOK {
			t.Fatalf("createSecret %s: %d %s", p, a.Status, a.Body)
		}
	}
	var v apitypes.VerifyAuditResponse
	if a := ds.call(t, "verifyAudit", map[string]any{}, &v); a.Status != http.StatusOK || !v.OK || v.Checked < 6 {
		t.Fatalf("intact trail: %d %+v", a.Status, v)
	}

	store := ds.Node.AuditStore()
	entries, err := store.Range(1, math.MaxUint64, 100000)
	if err != nil || len(entries) < 6 {
		t.Fatalf("read the store: %d entries, %v", len(entries), err)
	}
	// Entry 3 now says someone else did it; every later hash is recomputed.
	const k = 3
	forged := append([]apitypes.AuditEntry(nil), entries[k-1:]...)
	forged[0].Principal = apitypes.Principal{Accessor: "0000", Name: "someone-else"}
	h := audit.Head{Seq: k - 1, Hash: entries[k-2].Hash}
	for i := range forged {
		h = h.Append(&forged[i])
	}
	if err := store.Append(forged); err != nil {
		t.Fatal(err)
	}
	if ok, _, _, _, _, err := store.Verify(); !ok || err != nil {
		t.Fatalf("the forged store should chain on its own (that is what the head check is for): %v %v", ok, err)
	}
	head := ds.Node.State().AuditHead
	if head.Seq < forged[len(forged)-1].Seq {
		t.Fatalf("head %d behind the store %d", head.Seq, forged[len(forged)-1].Seq)
	}
	v = apitypes.VerifyAuditResponse{}
	if a := ds.call(t, "verifyAudit", map[string]any{}, &v); a.Status != http.StatusOK {
		t.Fatalf("verifyAudit: %d %s", a.Status, a.Body)
	}
	// Broken where the local chain first fails to match the replicated
	// head: at the head's seq (it is the only anchor), never later.
	if v.OK || v.FirstBrokenSeq < k || v.FirstBrokenSeq > head.Seq {
		t.Fatalf("verifyAudit on a recomputed store: %+v; want not ok, first_broken_seq in %d..%d", v, k, head.Seq)
	}
}
