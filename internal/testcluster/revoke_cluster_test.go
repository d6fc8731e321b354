package testcluster_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// TestClusterRevocationOnEveryNode: once revokeToken is acknowledged, the
// token is refused by every node: at once for a read that waits for the
// revocation's index, within a few seconds for any request.
func TestClusterRevocationOnEveryNode(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := tcCtx(t, 90*time.Second)
	const path, value = "/revoke/app/db", "revoke-test-value"
	if _, err := c.Client(0).CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: path, Value: []byte(value)}); err != nil {
		t.Fatal(err)
	}
	const cycles = 4
	for cycle := 0; cycle < cycles; cycle++ {
		l, f := c.Leader(), c.Followers()
		creator, revoker := c.Client(f[cycle%2]), c.Client(l)
		if cycle%2 == 1 {
			revoker = c.Client(f[0])
		}
		tk, err := creator.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: fmt.Sprintf("ops-%d", cycle), Policies: []string{"admin"}})
		if err != nil {
			t.Fatal(err)
		}
		// Usable on every node, right away (a node that has not applied it yet
		// catches up with the leader).
		for i := range c.Nodes {
			cl := c.ClientWithToken(i, tk.Token)
			w, err := cl.Whoami(ctx, &apitypes.WhoamiRequest{})
			if err != nil || w.Accessor != tk.Accessor {
				t.Fatalf("cycle %d: whoami with the new token on node %d: %+v %v", cycle, i, w, err)
			}
			tcMustValue(ctx, t, cl, path, 0, 0, value)
			if _, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte(value)}); err != nil {
				t.Fatalf("cycle %d: put with the new token on node %d: %v", cycle, i, err)
			}
		}

		rv, err := revoker.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: tk.Accessor})
		if err != nil {
			t.Fatalf("cycle %d: revoke: %v", cycle, err)
		}
		// A read that waits for the revocation's index is refused everywhere,
		// with no grace period.
		var wg sync.WaitGroup
		errc := make(chan string, 2*len(c.Nodes))
		for i := range c.Nodes {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				cl := c.ClientWithToken(i, tk.Token)
				got, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: rv.Index}})
				if errs.CodeOf(err) != errs.Unauthenticated {
					if err == nil {
						errc <- fmt.Sprintf("cycle %d: node %s served getSecretValue (min_index %d = revoke index) to the revoked token: value %q", cycle, c.Nodes[i].ID, rv.Index, got.Value)
					} else {
						errc <- fmt.Sprintf("cycle %d: node %s: getSecretValue with revoked token at min_index %d: %v, want Unauthenticated", cycle, c.Nodes[i].ID, rv.Index, err)
					}
				}
				ls, err := cl.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/", Recursive: true, ReadOptions: apitypes.ReadOptions{MinIndex: rv.Index}})
				if errs.CodeOf(err) != errs.Unauthenticated {
					errc <- fmt.Sprintf("cycle %d: node %s: listSecrets with revoked token at min_index %d: %v (answer %+v), want Unauthenticated", cycle, c.Nodes[i].ID, rv.Index, err, ls)
				}
			}(i)
		}
		wg.Wait()
		close(errc)
		for msg := range errc {
			t.Error(msg)
		}
		// Any request, on any node, is refused within a few seconds.
		for i := range c.Nodes {
			cl := c.ClientWithToken(i, tk.Token)
			c.Eventually(3*time.Second, fmt.Sprintf("node %d to refuse the revoked token", i), func() bool {
				_, err := cl.Whoami(ctx, &apitypes.WhoamiRequest{})
				return errs.CodeOf(err) == errs.Unauthenticated
			})
			_, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path})
			tcWantCode(t, err, errs.Unauthenticated, fmt.Sprintf("cycle %d node %d: stale read with revoked token", cycle, i))
			_, err = cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: path, Value: []byte("by-revoked")})
			tcWantCode(t, err, errs.Unauthenticated, fmt.Sprintf("cycle %d node %d: write with revoked token", cycle, i))
			_, err = cl.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "escalate", Policies: []string{"admin"}})
			tcWantCode(t, err, errs.Unauthenticated, fmt.Sprintf("cycle %d node %d: createToken with revoked token", cycle, i))
		}
		// Revoking again: NotFound; the root token still works everywhere.
		_, err = revoker.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: tk.Accessor})
		tcWantCode(t, err, errs.NotFound, "revoke twice")
	}
	min := tcLeaderIndex(c)
	for i, cl := range tcAllClients(c) {
		s := tcMustDescribe(ctx, t, cl, path, min).Secret
		// 1 create + 3 puts per cycle; no write of the revoked tokens landed.
		if want := uint64(1 + 3*cycles); s.CurrentVersion != want {
			t.Fatalf("node %d: current_version %d, want %d", i, s.CurrentVersion, want)
		}
	}
}
