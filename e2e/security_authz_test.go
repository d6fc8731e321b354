package e2e

// Security regression tests of the token holder (SPEC §6, issue 14 findings
// 3, 7, 9, 11 and 12), replayed black-box against real processes. Each one
// fails on 7fef798.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
)

func TestSecurityAuthz(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	leader := c.leader()
	if leader == nil {
		t.Fatal("no leader after init")
	}
	fs := c.followers(leader)
	if len(fs) != 2 {
		t.Fatalf("expected 2 followers, got %d", len(fs))
	}
	t.Run("Escalation", func(t *testing.T) { testAuthzEscalation(t, c, leader) })
	t.Run("HugePolicies", func(t *testing.T) { testAuthzHugePolicies(t, c, leader) })
	t.Run("RevokedBatchGet", func(t *testing.T) { testAuthzRevokedBatchGet(t, c, leader, fs[0]) })
	t.Run("NoPolicyProbing", func(t *testing.T) { testAuthzNoProbing(t, c, fs[1]) })
	t.Run("PutPolicyThenCreateTokenOnFollower", func(t *testing.T) { testAuthzPolicyThenToken(t, c, fs[0]) })
}

func authzRule(effect string, actions, paths []string) apitypes.PolicyRule {
	return apitypes.PolicyRule{Effect: effect, Actions: actions, Paths: paths}
}

func authzToken(t *testing.T, base, token string, req apitypes.CreateTokenRequest) apitypes.CreateTokenResponse {
	t.Helper()
	var out apitypes.CreateTokenResponse
	mustPost(t, base, token, "createToken", req, &out)
	return out
}

func authzWant(t *testing.T, r apiResult, code, what string) {
	t.Helper()
	if r.errorCode() != code {
		t.Errorf("%s: got %s, want %s", what, r, code)
	}
}

// Finding 3: a token whose only right is createToken can't mint an admin
// token; one whose only right is putPolicy can't rewrite its own policy;
// a token with a TTL and source_cidrs can't mint one without.
func testAuthzEscalation(t *testing.T, c *cluster, n *server) {
	star := []string{"*"}
	mustPost(t, n.url, c.token, "putPolicy", apitypes.PutPolicyRequest{Name: "tokmaker",
		Rules: []apitypes.PolicyRule{authzRule("allow", []string{"createToken"}, star)}}, nil)
	mustPost(t, n.url, c.token, "putPolicy", apitypes.PutPolicyRequest{Name: "polwriter",
		Rules: []apitypes.PolicyRule{authzRule("allow", []string{"putPolicy"}, star)}}, nil)
	maker := authzToken(t, n.url, c.token, apitypes.CreateTokenRequest{Name: "maker", Policies: []string{"tokmaker"}})
	writer := authzToken(t, n.url, c.token, apitypes.CreateTokenRequest{Name: "writer", Policies: []string{"polwriter"}})

	var made apitypes.CreateTokenResponse
	r := post(t, n.url, maker.Token, "createToken", apitypes.CreateTokenRequest{Name: "evil", Policies: []string{"admin"}}, &made)
	authzWant(t, r, "PermissionDenied", "createToken-only token creates an admin token")
	if r.status == http.StatusOK {
		if w := post(t, n.url, made.Token, "listTokens", struct{}{}, nil); w.status == http.StatusOK {
			t.Errorf("the minted admin token works: listTokens %s", w)
		}
	}
	// Granting what it holds is still allowed.
	mustPost(t, n.url, maker.Token, "createToken", apitypes.CreateTokenRequest{Name: "peer", Policies: []string{"tokmaker"}, TTL: "1h"}, nil)

	r = post(t, n.url, writer.Token, "putPolicy", apitypes.PutPolicyRequest{Name: "polwriter",
		Rules: []apitypes.PolicyRule{authzRule("allow", star, star)}}, nil)
	authzWant(t, r, "PermissionDenied", "putPolicy-only token rewrites its own policy")
	var got apitypes.GetPolicyResponse
	mustPost(t, n.url, c.token, "getPolicy", apitypes.GetPolicyRequest{Name: "polwriter", ReadOptions: apitypes.ReadOptions{Consistency: "leader"}}, &got)
	if len(got.Policy.Rules) != 1 || !slices.Equal(got.Policy.Rules[0].Actions, []string{"putPolicy"}) {
		t.Errorf("policy polwriter was changed: %+v", got.Policy.Rules)
	}
	authzWant(t, post(t, n.url, writer.Token, "deletePolicy", apitypes.DeletePolicyRequest{Name: "tokmaker"}, nil), "PermissionDenied", "deletePolicy without admin")

	// A bounded token can't mint an unbounded one.
	bounded := authzToken(t, n.url, c.token, apitypes.CreateTokenRequest{Name: "bounded", Policies: []string{"tokmaker"}, TTL: "1h", SourceCIDRs: []string{"127.0.0.0/8"}})
	for _, tc := range []struct {
		what string
		req  apitypes.CreateTokenRequest
	}{
		{"no ttl", apitypes.CreateTokenRequest{Name: "x", Policies: []string{"tokmaker"}, SourceCIDRs: []string{"127.0.0.1/32"}}},
		{"longer ttl", apitypes.CreateTokenRequest{Name: "x", Policies: []string{"tokmaker"}, TTL: "2h", SourceCIDRs: []string{"127.0.0.1/32"}}},
		{"no source_cidrs", apitypes.CreateTokenRequest{Name: "x", Policies: []string{"tokmaker"}, TTL: "30m"}},
		{"wider source_cidrs", apitypes.CreateTokenRequest{Name: "x", Policies: []string{"tokmaker"}, TTL: "30m", SourceCIDRs: []string{"0.0.0.0/0"}}},
	} {
		authzWant(t, post(t, n.url, bounded.Token, "createToken", tc.req, nil), "PermissionDenied", "bounded token mints a token with "+tc.what)
	}
	mustPost(t, n.url, bounded.Token, "createToken", apitypes.CreateTokenRequest{Name: "narrower", Policies: []string{"tokmaker"}, TTL: "30m", SourceCIDRs: []string{"127.0.0.1/32"}}, nil)
}

// Finding 9: a policy with thousands of actions and paths, and a token
// naming a policy 20,000 times, are refused.
func testAuthzHugePolicies(t *testing.T, c *cluster, n *server) {
	var rules []apitypes.PolicyRule
	for i := range 15 {
		paths := make([]string, 2000)
		for j := range paths {
			paths[j] = fmt.Sprintf("/h%d/p%d/*", i, j)
		}
		rules = append(rules, authzRule("allow", slices.Repeat([]string{"getSecretValue"}, 2000), paths))
	}
	r := post(t, n.url, c.token, "putPolicy", apitypes.PutPolicyRequest{Name: "huge", Rules: rules}, nil)
	authzWant(t, r, "InvalidArgument", "a 15-rule policy with 2000 actions and paths per rule")
	r = post(t, n.url, c.token, "createToken", apitypes.CreateTokenRequest{Name: "many", Policies: slices.Repeat([]string{"secrets-reader"}, 20000)}, nil)
	authzWant(t, r, "InvalidArgument", "a token naming a policy 20,000 times")
	r = post(t, n.url, c.token, "createToken", apitypes.CreateTokenRequest{Name: "twice", Policies: []string{"secrets-reader", "secrets-reader"}}, nil)
	authzWant(t, r, "InvalidArgument", "a token naming a policy twice")
}

// Finding 7: batchGetSecretValue at min_index of a revocation, on a
// follower, is refused (a revoked token reads nothing).
func testAuthzRevokedBatchGet(t *testing.T, c *cluster, leader, f *server) {
	path := "/authz/batch/db"
	var cr apitypes.CreateSecretResponse
	mustPost(t, leader.url, c.token, "createSecret", apitypes.CreateSecretRequest{Path: path, Value: []byte("batch-secret")}, &cr)
	var served []string
	for round := range 15 {
		tok := authzToken(t, leader.url, c.token, apitypes.CreateTokenRequest{Name: fmt.Sprintf("b%d", round), Policies: []string{"secrets-reader"}})
		// Warm: the follower knows the token and serves it.
		var bg apitypes.BatchGetSecretValueResponse
		mustPost(t, f.url, tok.Token, "batchGetSecretValue", apitypes.BatchGetSecretValueRequest{Paths: []string{path},
			ReadOptions: apitypes.ReadOptions{MinIndex: tok.Index}}, &bg)
		if len(bg.Values) != 1 {
			t.Fatalf("warm-up batch read: %+v", bg)
		}
		var rv apitypes.IndexResponse
		mustPost(t, leader.url, c.token, "revokeToken", apitypes.RevokeTokenRequest{Accessor: tok.Accessor}, &rv)
		bg = apitypes.BatchGetSecretValueResponse{}
		r := post(t, f.url, tok.Token, "batchGetSecretValue", apitypes.BatchGetSecretValueRequest{Paths: []string{path},
			ReadOptions: apitypes.ReadOptions{MinIndex: rv.Index}}, &bg)
		if r.status == http.StatusOK {
			served = append(served, fmt.Sprintf("round %d: %d values at index %d, revoked at %d", round, len(bg.Values), bg.Index, rv.Index))
			continue
		}
		authzWant(t, r, "Unauthenticated", "batch read by a revoked token")
	}
	if len(served) > 0 {
		t.Errorf("a revoked token's batch read was served at min_index of its revocation:\n%s", strings.Join(served, "\n"))
	}
}

// Finding 11: an auditor (no createToken right) gets the same answer for a
// policy that exists and one that doesn't.
func testAuthzNoProbing(t *testing.T, c *cluster, n *server) {
	aud := authzToken(t, n.url, c.token, apitypes.CreateTokenRequest{Name: "auditor", Policies: []string{"secrets-read-access"}})
	exists := post(t, n.url, aud.Token, "createToken", apitypes.CreateTokenRequest{Name: "p", Policies: []string{"secrets-reader"}}, nil)
	missing := post(t, n.url, aud.Token, "createToken", apitypes.CreateTokenRequest{Name: "p", Policies: []string{"no-such-policy-x"}}, nil)
	authzWant(t, exists, "PermissionDenied", "auditor createToken naming an existing policy")
	if exists.status != missing.status || exists.errorCode() != missing.errorCode() ||
		strings.Contains(string(missing.body), "no-such-policy-x") || strings.Contains(string(missing.body), "exist") {
		t.Errorf("an auditor can tell policy names apart:\n existing: %s\n missing:  %s", exists, missing)
	}
}

// Finding 12: putPolicy then createToken naming it, both sent to the same
// follower back to back, succeed every time.
func testAuthzPolicyThenToken(t *testing.T, c *cluster, f *server) {
	var failures []string
	for i := range 30 {
		name := fmt.Sprintf("fresh-%d", i)
		mustPost(t, f.url, c.token, "putPolicy", apitypes.PutPolicyRequest{Name: name,
			Rules: []apitypes.PolicyRule{authzRule("allow", []string{"describeSecret"}, []string{"/fresh/*"})}}, nil)
		r := post(t, f.url, c.token, "createToken", apitypes.CreateTokenRequest{Name: name, Policies: []string{name}}, nil)
		if r.status != http.StatusOK {
			failures = append(failures, fmt.Sprintf("%s: %s", name, r))
		}
	}
	if len(failures) > 0 {
		t.Errorf("createToken right after putPolicy on a follower failed %d/30 times:\n%s", len(failures), strings.Join(failures, "\n"))
	}
}
