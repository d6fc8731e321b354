package testcluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// TestClusterCASConflicts: putSecretValue with expected_version is a check-and-set
// on current_version, decided once, at the leader, for the whole cluster.
func TestClusterCASConflicts(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	f := c.Followers()
	a, b := c.Client(f[0]), c.Client(f[1])
	const path = "/cas/app/db"

	if _, err := a.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	// Matching expected_version succeeds.
	put, err := a.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("v2"), ExpectedVersion: tcU64(1)})
	if err != nil {
		t.Fatalf("CAS put with matching expected_version: %v", err)
	}
	if put.Version != 2 {
		t.Fatalf("CAS put: version %d, want 2", put.Version)
	}

	// Stale expected_version through the other follower: VersionMismatch,
	// nothing written.
	_, err = b.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("stale"), ExpectedVersion: tcU64(1)})
	tcWantCode(t, err, errs.VersionMismatch, "stale CAS put")
	_, err = b.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("stale0"), ExpectedVersion: tcU64(0)})
	tcWantCode(t, err, errs.VersionMismatch, "CAS put expecting no version")
	_, err = b.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("future"), ExpectedVersion: tcU64(3)})
	tcWantCode(t, err, errs.VersionMismatch, "CAS put expecting a future version")

	// The HTTP status of VersionMismatch is 412, with the error body.
	body := tcJSON(t, map[string]any{"path": path, "value": []byte("stale-raw"), "expected_version": 1})
	status, raw := tcRawPost(ctx, t, c.Nodes[f[1]].URL, c.RootToken, "putSecretValue", body)
	var eb apitypes.ErrorBody
	if err := json.Unmarshal(raw, &eb); err != nil {
		t.Fatalf("stale CAS put: answer is not an error body: %s", raw)
	}
	if status != http.StatusPreconditionFailed || eb.Error.Code != string(errs.VersionMismatch) {
		t.Fatalf("stale CAS put over HTTP: status %d, code %q, want 412 VersionMismatch (body %s)", status, eb.Error.Code, raw)
	}

	min := tcLeaderIndex(c)
	for i, cl := range tcAllClients(c) {
		s := tcMustDescribe(ctx, t, cl, path, min).Secret
		if s.CurrentVersion != 2 || len(s.Versions) != 2 {
			t.Fatalf("node %d after rejected CAS puts: current_version %d, %d versions; want 2 and 2", i, s.CurrentVersion, len(s.Versions))
		}
		tcMustValue(ctx, t, cl, path, 0, min, "v2")
	}

	// Concurrent CAS writers on two followers with the same expected_version:
	// exactly one wins, every round.
	const rounds = 10
	cur := uint64(2)
	winners := map[uint64]string{}
	for r := 0; r < rounds; r++ {
		start := make(chan struct{})
		var wg sync.WaitGroup
		type outcome struct {
			value   string
			version uint64
			err     error
		}
		res := make([]outcome, 2)
		for w, node := range []int{f[0], f[1]} {
			wg.Add(1)
			go func(w, node int) {
				defer wg.Done()
				val := fmt.Sprintf("round%d-writer%d", r, w)
				<-start
				p, err := c.Client(node).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(val), ExpectedVersion: tcU64(cur)})
				res[w] = outcome{value: val, err: err}
				if err == nil {
					res[w].version = p.Version
				}
			}(w, node)
		}
		close(start)
		wg.Wait()
		ok := 0
		for w, o := range res {
			switch errs.CodeOf(o.err) {
			case "":
				ok++
				if o.version != cur+1 {
					t.Fatalf("round %d writer %d: won with version %d, want %d", r, w, o.version, cur+1)
				}
				winners[o.version] = o.value
			case errs.VersionMismatch:
			default:
				t.Fatalf("round %d writer %d: unexpected error %v", r, w, o.err)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d concurrent CAS writers with expected_version %d succeeded, want exactly 1 (%+v)", r, ok, cur, res)
		}
		cur++
	}

	min = tcLeaderIndex(c)
	for i, cl := range tcAllClients(c) {
		s := tcMustDescribe(ctx, t, cl, path, min).Secret
		if s.CurrentVersion != cur || uint64(len(s.Versions)) != cur {
			t.Fatalf("node %d: current_version %d with %d versions, want %d and %d", i, s.CurrentVersion, len(s.Versions), cur, cur)
		}
		for v, want := range winners {
			tcMustValue(ctx, t, cl, path, v, min, want)
		}
	}
}
