package testcluster_test

// TestAuthzEveryAction drives every action of the acl action table, on the
// leader and on a follower, with a revoked token, an expired token, a token
// whose policy denies the action on its path, and (for the actions a
// secret's access policy restricts) a request from outside that access
// policy: each gets its error code, and the replicated state doesn't change.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

const (
	authzTarget  = "/authz/target"  // a secret with a value, no access policy
	authzGuarded = "/authz/guarded" // a secret whose access policy no test source meets
	authzKey     = "authzkey"
)

// authzBodies is a valid request of every action, with the secret path as
// %[1]q and the accessor of a live token as %[2]q. An action of the table
// missing here fails the test.
var authzBodies = map[string]string{
	"createSecret":           `{"path":%[1]q,"value":"dmFsdWU="}`,
	"describeSecret":         `{"path":%[1]q}`,
	"listSecrets":            `{"prefix":"/authz/"}`,
	"getSecretValue":         `{"path":%[1]q}`,
	"batchGetSecretValue":    `{"paths":[%[1]q]}`,
	"putSecretValue":         `{"path":%[1]q,"value":"dmFsdWU="}`,
	"generateSecret":         `{"path":%[1]q}`,
	"updateSecret":           `{"path":%[1]q,"description":"changed"}`,
	"rebindSecretKey":        `{"path":%[1]q,"kms_key":"authzkey"}`,
	"destroySecretVersion":   `{"path":%[1]q,"version":1}`,
	"deleteSecret":           `{"path":%[1]q}`,
	"createKey":              `{"name":"authznew"}`,
	"describeKey":            `{"name":"authzkey"}`,
	"listKeys":               `{}`,
	"rotateKey":              `{"name":"authzkey"}`,
	"disableKey":             `{"name":"authzkey"}`,
	"enableKey":              `{"name":"authzkey"}`,
	"scheduleKeyDeletion":    `{"name":"authzkey","pending_days":7}`,
	"cancelKeyDeletion":      `{"name":"authzkey"}`,
	"listKeyBindings":        `{"name":"authzkey"}`,
	"createToken":            `{"name":"minted","policies":["secrets-reader"]}`,
	"revokeToken":            `{"accessor":%[2]q}`,
	"listTokens":             `{}`,
	"whoami":                 `{}`,
	"putPolicy":              `{"name":"authz-new","rules":[{"effect":"allow","actions":["*"],"paths":["*"]}]}`,
	"getPolicy":              `{"name":"authz-victim"}`,
	"listPolicies":           `{}`,
	"deletePolicy":           `{"name":"authz-victim"}`,
	"queryAudit":             `{}`,
	"verifyAudit":            `{}`,
	"sys.init":               ``, // public: no token is checked (AlreadyExists once initialized)
	"sys.health":             ``, // public GET
	"sys.cluster":            `{}`,
	"sys.join":               `{"addr":"127.0.0.1:1"}`,
	"sys.removePeer":         `{"node_id":"no-such-node"}`,
	"sys.transferLeadership": `{}`,
	"sys.snapshot":           `{}`,
	"sys.restore":            `not a snapshot`,
	"sys.rewrap":             `{}`,
}

// authzDigest is the replicated state a denied request must not change, as
// the leader answers it (indexes left out).
func authzDigest(ctx context.Context, t *testing.T, root *client.Client) string {
	t.Helper()
	lead := apitypes.ReadOptions{Consistency: apitypes.ConsistencyLeader}
	var parts []any
	ls, err := root.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/", Recursive: true, PageSize: 1000, ReadOptions: lead})
	if err != nil {
		t.Fatalf("digest: listSecrets: %v", err)
	}
	for _, s := range ls.Secrets {
		d, err := root.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: s.Path, ReadOptions: lead})
		if err != nil {
			t.Fatalf("digest: describeSecret: %v", err)
		}
		parts = append(parts, d.Secret)
	}
	lk, err := root.ListKeys(ctx, &apitypes.ListKeysRequest{ReadOptions: lead})
	if err != nil {
		t.Fatalf("digest: listKeys: %v", err)
	}
	lt, err := root.ListTokens(ctx, &apitypes.ListTokensRequest{ReadOptions: lead})
	if err != nil {
		t.Fatalf("digest: listTokens: %v", err)
	}
	var lp apitypes.ListPoliciesResponse
	if err := root.Do(ctx, "listPolicies", &apitypes.ListPoliciesRequest{ReadOptions: lead}, &lp); err != nil {
		t.Fatalf("digest: listPolicies: %v", err)
	}
	cl, err := root.Cluster(ctx, &apitypes.ClusterRequest{})
	if err != nil {
		t.Fatalf("digest: sys/cluster: %v", err)
	}
	// Membership, not leadership: a loaded machine may move the leader.
	var members []string
	for _, m := range cl.Members {
		members = append(members, m.NodeID+"/"+string(m.Suffrage))
	}
	parts = append(parts, lk.Keys, lt.Tokens, lp.Policies, members)
	b, err := json.Marshal(parts)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// authzCode sends one action and returns its error code ("" for success).
// A batch read's per-path error counts as the answer's. Unavailable (no
// leader for a moment on a loaded machine) is retried.
func authzCode(ctx context.Context, t *testing.T, url, token string, a acl.Action, body string) string {
	t.Helper()
	var code string
	deadline := time.Now().Add(15 * time.Second)
	for {
		code = authzCodeOnce(ctx, t, url, token, a, body)
		if code != string(errs.Unavailable) || time.Now().After(deadline) {
			return code
		}
		time.Sleep(100 * time.Millisecond) // polling interval while a leader is elected
	}
}

func authzCodeOnce(ctx context.Context, t *testing.T, url, token string, a acl.Action, body string) string {
	t.Helper()
	status, out := tcRawPost(ctx, t, url, token, a.Route, []byte(body))
	var e apitypes.ErrorBody
	if status != http.StatusOK {
		if err := json.Unmarshal(out, &e); err != nil || e.Error.Code == "" {
			t.Fatalf("%s: HTTP %d with no error code: %.300s", a.Name, status, out)
		}
		return e.Error.Code
	}
	if a.Name == "batchGetSecretValue" {
		var bg apitypes.BatchGetSecretValueResponse
		if err := json.Unmarshal(out, &bg); err != nil {
			t.Fatal(err)
		}
		for _, d := range bg.Errors {
			return d.Code
		}
	}
	return ""
}

func TestAuthzEveryAction(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 3*time.Minute)
	leader := c.Leader()
	root := c.Client(leader)

	// Every node's token is created and known before the table runs.
	expiring := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "expiring", Policies: []string{acl.PolicyAdmin}, TTL: "1s"})
	created := time.Now()
	revoked := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "revoked", Policies: []string{acl.PolicyAdmin}})
	victim := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "victim", Policies: []string{"secrets-reader"}})
	aclOK[*apitypes.IndexResponse](t, "revoke")(root.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: revoked.Accessor}))
	aclCreateSecret(t, ctx, root, authzTarget, "target-value", nil)
	aclCreateSecret(t, ctx, root, authzGuarded, "guarded-value", &apitypes.AccessPolicy{SourceCIDRs: []string{"10.0.0.0/8"}})
	if _, err := root.CreateKey(ctx, &apitypes.CreateKeyRequest{Name: authzKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := aclPutPolicy(ctx, root, "authz-victim", aclAllow("describeSecret", "/authz/*")); err != nil {
		t.Fatal(err)
	}
	// One token per action: admin, plus a policy denying just that action
	// on the path its request names (deny wins, even over admin).
	actions := acl.AllActions()
	denied := map[string]string{}
	for i, a := range actions {
		path := "*"
		switch {
		case a.Name == "listSecrets":
			path = "*" // a listing is filtered, not refused, when only some paths are denied
		case strings.Contains(authzBodies[a.Name], "%[1]q"):
			path = authzTarget
		}
		name := fmt.Sprintf("authz-deny-%d", i)
		if _, err := aclPutPolicy(ctx, root, name, aclDeny(a.Name, path)); err != nil {
			t.Fatalf("policy denying %s: %v", a.Name, err)
		}
		denied[a.Name] = aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: name, Policies: []string{acl.PolicyAdmin, name}}).Token
	}
	aclWaitApplied(t, c, root.LastIndex())
	aclWaitFor(t, 10*time.Second, "the 1s token to expire", func() error {
		if time.Since(created) < 1100*time.Millisecond {
			return fmt.Errorf("not yet")
		}
		return nil
	})

	for _, a := range actions {
		body, ok := authzBodies[a.Name]
		if !ok {
			t.Errorf("action %s of the table has no request in authzBodies", a.Name)
			continue
		}
		if a.Public {
			continue // no token is checked (sys.init, sys.health)
		}
		t.Run(a.Name, func(t *testing.T) {
			before := authzDigest(ctx, t, root)
			l := c.Leader()
			nodes := map[string]int{"leader": l, "follower": (l + 1) % len(c.Nodes)}
			for where, i := range nodes {
				url := c.Nodes[i].URL
				req := func(path string) string { return fmt.Sprintf(body, path, victim.Accessor) }
				if !strings.Contains(body, "%[") {
					req = func(string) string { return body }
				}
				check := func(what, token, path string, want errs.Code) {
					t.Helper()
					if got := authzCode(ctx, t, url, token, a, req(path)); got != string(want) {
						t.Errorf("%s on the %s: got %q, want %q", what, where, got, want)
					}
				}
				check("revoked token", revoked.Token, authzTarget, errs.Unauthenticated)
				check("expired token", expiring.Token, authzTarget, errs.Unauthenticated)
				wantDenied := errs.PermissionDenied
				if a.Self {
					wantDenied = "" // any valid token may call it
				}
				check("policy denying the path", denied[a.Name], authzTarget, wantDenied)
				if a.AccessPolicy {
					check("outside the secret's access policy", c.RootToken, authzGuarded, errs.PermissionDenied)
				}
			}
			if after := authzDigest(ctx, t, root); before != after {
				i := 0
				for i < len(before) && i < len(after) && before[i] == after[i] {
					i++
				}
				from := max(0, i-150)
				t.Errorf("the state changed at byte %d:\nbefore …%.300s\nafter  …%.300s", i, before[from:], after[from:])
			}
		})
	}
}

// TestPutPolicyThenCreateTokenOnFollower (issue 14 finding 12): putPolicy
// then createToken naming the new policy, both sent to the same follower
// back to back, right after leadership moved, succeed: the policy's
// existence is checked at apply, on the leader's state.
func TestPutPolicyThenCreateTokenOnFollower(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 2*time.Minute)
	for round := range 4 {
		old := c.Leader()
		if _, err := c.Client(old).TransferLeadership(ctx, &apitypes.TransferLeadershipRequest{}); err != nil {
			t.Fatalf("round %d: transfer leadership: %v", round, err)
		}
		c.Eventually(15*time.Second, "a new leader", func() bool { l := c.Leader(); return l != old })
		f := c.Client((c.Leader() + 1) % len(c.Nodes))
		for i := range 5 {
			name := fmt.Sprintf("moved-%d-%d", round, i)
			if _, err := aclPutPolicy(ctx, f, name, aclAllow("describeSecret", "/moved/*")); err != nil {
				t.Fatalf("%s: putPolicy: %v", name, err)
			}
			if _, err := f.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: name, Policies: []string{name}}); err != nil {
				t.Fatalf("%s: createToken right after putPolicy on a follower: %v", name, err)
			}
		}
	}
}
