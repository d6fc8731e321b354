package testcluster_test

// Access-control tests on 3-node in-process clusters (issue 3, SPEC §2
// "Access control" and "Access policies (per secret)"). Requests come from
// different loopback source addresses (127.0.0.1 and 127.0.0.2, bound on the
// client side) to exercise CIDR conditions and X-Forwarded-For handling.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
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
	aclPathDB    = "/app/prod/api/db"
	aclPathCache = "/app/prod/api/cache"
	aclPathOther = "/app/prod/other/x"
	aclIpOne     = "127.0.0.1"
	aclIpTwo     = "127.0.0.2"
)

// ---------------------------------------------------------------- helpers

func aclCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func aclOK[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// aclWantCode fails unless err carries code; it returns the error for more checks.
func aclWantCode(t *testing.T, err error, code errs.Code, what string) *errs.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %s", what, code)
	}
	e := errs.As(err)
	if e.Code != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
	return e
}

func aclWantMessage(t *testing.T, e *errs.Error, what string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(e.Message, p) {
			t.Errorf("%s: message %q does not name %q", what, e.Message, p)
		}
	}
}

func aclAllow(actions string, paths ...string) apitypes.PolicyRule {
	return apitypes.PolicyRule{Effect: "allow", Actions: strings.Split(actions, ","), Paths: paths}
}

func aclDeny(actions string, paths ...string) apitypes.PolicyRule {
	return apitypes.PolicyRule{Effect: "deny", Actions: strings.Split(actions, ","), Paths: paths}
}

func aclPutPolicy(ctx context.Context, cl *client.Client, name string, rules ...apitypes.PolicyRule) (uint64, error) {
	var resp apitypes.IndexResponse
	err := cl.Do(ctx, "putPolicy", &apitypes.PutPolicyRequest{Name: name, Rules: rules}, &resp)
	return resp.Index, err
}

func aclDeletePolicy(ctx context.Context, cl *client.Client, name string) (uint64, error) {
	var resp apitypes.IndexResponse
	err := cl.Do(ctx, "deletePolicy", &apitypes.DeletePolicyRequest{Name: name}, &resp)
	return resp.Index, err
}

func aclNewToken(t *testing.T, ctx context.Context, cl *client.Client, req apitypes.CreateTokenRequest) *apitypes.CreateTokenResponse {
	t.Helper()
	return aclOK[*apitypes.CreateTokenResponse](t, "createToken "+req.Name)(cl.CreateToken(ctx, &req))
}

func aclCreateSecret(t *testing.T, ctx context.Context, cl *client.Client, path, value string, ap *apitypes.AccessPolicy) uint64 {
	t.Helper()
	req := &apitypes.CreateSecretRequest{Path: path, AccessPolicy: ap}
	if value != "" {
		req.Value = []byte(value)
	}
	return aclOK[*apitypes.CreateSecretResponse](t, "createSecret "+path)(cl.CreateSecret(ctx, req)).Index
}

// aclXffTransport adds an X-Forwarded-For header to every request.
type aclXffTransport struct {
	base http.RoundTripper
	xff  string
}

func (x *aclXffTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", x.xff)
	return x.base.RoundTrip(r)
}

// aclHttpFrom returns an http.Client whose connections leave from localIP
// (any loopback address on Linux) and, if xff is set, carry X-Forwarded-For.
func aclHttpFrom(t *testing.T, localIP, xff string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	if xff != "" {
		rt = &aclXffTransport{base: tr, xff: xff}
	}
	return &http.Client{Transport: rt, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// aclClientFrom is a Coffer client for node url whose requests come from localIP.
func aclClientFrom(t *testing.T, url, token, localIP, xff string) *client.Client {
	t.Helper()
	cl, err := client.New(url, token, client.WithHTTPClient(aclHttpFrom(t, localIP, xff)))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// aclRawPost sends one action with plain net/http (optionally with headers)
// and returns the HTTP status and body.
func aclRawPost(t *testing.T, hc *http.Client, url, action, token string, body any, hdr map[string]string) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url+"/v1/"+action, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", action, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// aclAuditEntries queries the audit trail through cl linearizably (so entries
// committed through another node are visible) and returns the matches.
func aclAuditEntries(t *testing.T, ctx context.Context, cl *client.Client, q apitypes.QueryAuditRequest) []apitypes.AuditEntry {
	t.Helper()
	q.Consistency = apitypes.ConsistencyLeader
	q.Limit = 1000
	var all []apitypes.AuditEntry
	for {
		resp, err := cl.QueryAudit(ctx, &q)
		if err != nil {
			t.Fatalf("queryAudit: %v", err)
		}
		all = append(all, resp.Entries...)
		if resp.NextPageToken == "" {
			return all
		}
		q.PageToken = resp.NextPageToken
	}
}

func aclFilterEntries(es []apitypes.AuditEntry, keep func(apitypes.AuditEntry) bool) []apitypes.AuditEntry {
	var out []apitypes.AuditEntry
	for _, e := range es {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func aclGetValue(ctx context.Context, cl *client.Client, path string, minIndex uint64) (string, error) {
	resp, err := cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
	if err != nil {
		return "", err
	}
	return string(resp.Value), nil
}

// aclWaitFor polls cond (every 25 ms) until it holds or d passes.
func aclWaitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		}
		time.Sleep(25 * time.Millisecond) // polling interval, not a synchronisation
	}
}

// aclWaitApplied waits until every running node's state machine has applied
// index. Setup steps use it so that checks which are not about min_index
// don't depend on it (see TestPolicyChangeSeenAtMinIndex).
func aclWaitApplied(t *testing.T, c *testcluster.Cluster, index uint64) {
	t.Helper()
	aclWaitFor(t, 10*time.Second, fmt.Sprintf("every node to apply index %d", index), func() error {
		for _, n := range c.Nodes {
			if nd := n.Node(); nd != nil && nd.State().Index < index {
				return fmt.Errorf("%s is at %d", n.ID, nd.State().Index)
			}
		}
		return nil
	})
}

// ---------------------------------------------------------------- policies

func TestACLPolicies(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 60*time.Second)
	leader := c.Leader()
	fol := c.Followers()
	root := c.Client(leader)
	rootF := c.Client(fol[0])

	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	aclCreateSecret(t, ctx, root, aclPathCache, "cache-pass", nil)
	aclCreateSecret(t, ctx, root, aclPathOther, "other-pass", nil)
	aclOK[uint64](t, "putPolicy app")(aclPutPolicy(ctx, root, "app", aclAllow("getSecretValue,describeSecret", "/app/prod/api/*")))
	app := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "api-prod", Policies: []string{"app"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)

	t.Run("AppPolicyOnEveryNode", func(t *testing.T) {
		for i, n := range c.Nodes {
			cl := c.ClientWithToken(i, app.Token)
			v, err := aclGetValue(ctx, cl, aclPathDB, idx)
			if err != nil || v != "db-pass" {
				t.Fatalf("node %s: app reads %s: %q, %v", n.ID, aclPathDB, v, err)
			}
			if _, err := cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: aclPathCache}); err != nil {
				t.Fatalf("node %s: describe %s: %v", n.ID, aclPathCache, err)
			}
			_, err = aclGetValue(ctx, cl, aclPathOther, idx)
			e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": get "+aclPathOther)
			aclWantMessage(t, e, "denial of "+aclPathOther, aclPathOther)
			_, err = cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: aclPathDB, Value: []byte("x")})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": putSecretValue")
			// The answer is 403 on the wire.
			status, body := aclRawPost(t, http.DefaultClient, n.URL, "getSecretValue", app.Token, map[string]any{"path": aclPathOther}, nil)
			if status != http.StatusForbidden || !bytes.Contains(body, []byte(`"PermissionDenied"`)) {
				t.Fatalf("node %s: raw get %s: HTTP %d %s", n.ID, aclPathOther, status, body)
			}
			status, body = aclRawPost(t, http.DefaultClient, n.URL, "putSecretValue", app.Token,
				map[string]any{"path": aclPathDB, "value": base64.StdEncoding.EncodeToString([]byte("x"))}, nil)
			if status != http.StatusForbidden {
				t.Fatalf("node %s: raw put: HTTP %d %s", n.ID, status, body)
			}
		}
		// The failed put changed nothing.
		d := aclOK[*apitypes.DescribeSecretResponse](t, "describe")(root.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: aclPathDB}))
		if d.Secret.CurrentVersion != 1 {
			t.Fatalf("current_version %d after denied puts", d.Secret.CurrentVersion)
		}
	})

	t.Run("ListSecretsFiltersByPolicy", func(t *testing.T) {
		// listSecrets is not granted at all by "app"; a token that may list
		// /app/prod/* except /app/prod/other/* sees only the api secrets.
		aclOK[uint64](t, "putPolicy lister")(aclPutPolicy(ctx, root, "lister", aclAllow("listSecrets", "/app/prod/*"), aclDeny("listSecrets", "/app/prod/other/*")))
		lt := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "lister", Policies: []string{"lister"}})
		aclWaitApplied(t, c, root.LastIndex())
		cl := c.ClientWithToken(fol[1], lt.Token)
		resp, err := cl.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/app/prod/", Recursive: true, ReadOptions: apitypes.ReadOptions{MinIndex: root.LastIndex()}})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range resp.Secrets {
			got = append(got, s.Path)
		}
		if strings.Join(got, ",") != aclPathCache+","+aclPathDB {
			t.Fatalf("listed %v, want only the /app/prod/api/* secrets", got)
		}
		_, err = c.ClientWithToken(fol[1], app.Token).ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/app/prod/"})
		aclWantCode(t, err, errs.PermissionDenied, "list without a list grant")
	})

	t.Run("DenyWins", func(t *testing.T) {
		// A second policy's aclDeny beats the first one's allow, whatever the order.
		aclOK[uint64](t, "putPolicy no-db")(aclPutPolicy(ctx, root, "no-db", aclDeny("getSecretValue", aclPathDB)))
		aclOK[uint64](t, "putPolicy mixed")(aclPutPolicy(ctx, root, "mixed",
			aclAllow("*", "*"), aclDeny("*", "/app/prod/other/*"), aclAllow("getSecretValue", aclPathOther)))
		tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "deny-wins", Policies: []string{"app", "no-db"}})
		tok2 := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "mixed", Policies: []string{"mixed"}})
		at := root.LastIndex()
		aclWaitApplied(t, c, at)
		for i, n := range c.Nodes {
			cl := c.ClientWithToken(i, tok.Token)
			_, err := aclGetValue(ctx, cl, aclPathDB, at)
			e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": aclDeny over allow")
			aclWantMessage(t, e, "deny reason", `policy "no-db" rule 1`)
			if v, err := aclGetValue(ctx, cl, aclPathCache, at); err != nil || v != "cache-pass" {
				t.Fatalf("node %s: cache still allowed: %q %v", n.ID, v, err)
			}
			cl2 := c.ClientWithToken(i, tok2.Token)
			_, err = aclGetValue(ctx, cl2, aclPathOther, at)
			e = aclWantCode(t, err, errs.PermissionDenied, n.ID+": aclDeny in the same policy before a later allow")
			aclWantMessage(t, e, "deny reason", `policy "mixed" rule 2`)
			if v, err := aclGetValue(ctx, cl2, aclPathDB, at); err != nil || v != "db-pass" {
				t.Fatalf("node %s: aclAllow * still reads db: %q %v", n.ID, v, err)
			}
		}
	})

	t.Run("ChangeTakesEffectOnEveryNode", func(t *testing.T) {
		// Narrow "app" through a follower: only the cache remains readable.
		idx := aclOK[uint64](t, "narrow app")(aclPutPolicy(ctx, rootF, "app", aclAllow("getSecretValue", aclPathCache)))
		for i, n := range c.Nodes {
			cl := c.ClientWithToken(i, app.Token)
			_, err := aclGetValue(ctx, cl, aclPathDB, idx)
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": db after narrowing")
			_, err = cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: aclPathCache, ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": describe after narrowing")
			if v, err := aclGetValue(ctx, cl, aclPathCache, idx); err != nil || v != "cache-pass" {
				t.Fatalf("node %s: cache after narrowing: %q %v", n.ID, v, err)
			}
		}
		// getPolicy on another follower reflects it.
		var gp apitypes.GetPolicyResponse
		if err := c.Client(fol[1]).Do(ctx, "getPolicy", &apitypes.GetPolicyRequest{Name: "app", ReadOptions: apitypes.ReadOptions{MinIndex: idx}}, &gp); err != nil {
			t.Fatal(err)
		}
		if len(gp.Policy.Rules) != 1 || gp.Policy.Rules[0].Paths[0] != aclPathCache || gp.Policy.BuiltIn {
			t.Fatalf("getPolicy after narrowing: %+v", gp.Policy)
		}
		// Deleting the policy leaves the token with nothing.
		idx = aclOK[uint64](t, "delete app")(aclDeletePolicy(ctx, rootF, "app"))
		for i, n := range c.Nodes {
			_, err := aclGetValue(ctx, c.ClientWithToken(i, app.Token), aclPathCache, idx)
			e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": cache after deletePolicy")
			aclWantMessage(t, e, "after delete", "no policy allows getSecretValue")
		}
		_, err := aclDeletePolicy(ctx, root, "app")
		aclWantCode(t, err, errs.NotFound, "deleting a deleted policy")
	})

	t.Run("InvalidPoliciesRejected", func(t *testing.T) {
		win := func(w apitypes.TimeWindow) apitypes.PolicyRule {
			r := aclAllow("getSecretValue", "*")
			r.Conditions = &apitypes.PolicyConditions{TimeWindows: []apitypes.TimeWindow{w}}
			return r
		}
		cidr := func(c string) apitypes.PolicyRule {
			r := aclAllow("getSecretValue", "*")
			r.Conditions = &apitypes.PolicyConditions{SourceCIDRs: []string{c}}
			return r
		}
		cases := []struct {
			name  string
			rules []apitypes.PolicyRule
			want  []string // the message must name these
		}{
			{"unknown action", []apitypes.PolicyRule{aclAllow("getSecretValues", "*")}, []string{"rule 1", `unknown action "getSecretValues"`}},
			{"wrong case action", []apitypes.PolicyRule{aclAllow("describeSecret", "*"), aclAllow("GetSecretValue", "*")}, []string{"rule 2", `"GetSecretValue"`, `"getSecretValue"`}},
			{"glob in the middle", []apitypes.PolicyRule{aclAllow("getSecretValue", "/app/*/db")}, []string{`"/app/*/db"`}},
			{"partial glob", []apitypes.PolicyRule{aclAllow("getSecretValue", "/app/prod*")}, []string{`"/app/prod*"`}},
			{"trailing slash", []apitypes.PolicyRule{aclAllow("getSecretValue", "/app/prod/")}, []string{`"/app/prod/"`}},
			{"bad effect", []apitypes.PolicyRule{{Effect: "permit", Actions: []string{"*"}, Paths: []string{"*"}}}, []string{`"permit"`}},
			{"bad CIDR prefix length", []apitypes.PolicyRule{cidr("10.0.0.0/33")}, []string{"source_cidrs[0]", `"10.0.0.0/33"`}},
			{"CIDR without length", []apitypes.PolicyRule{cidr("10.1.2.3")}, []string{`"10.1.2.3"`}},
			{"CIDR host bits", []apitypes.PolicyRule{cidr("10.1.2.3/8")}, []string{`"10.1.2.3/8"`}},
			{"not an address", []apitypes.PolicyRule{cidr("corp-net")}, []string{`"corp-net"`}},
			{"bad window start", []apitypes.PolicyRule{win(apitypes.TimeWindow{Start: "25:00", End: "26:00", Timezone: "UTC"})}, []string{"time_windows[0]", `start "25:00"`}},
			{"bad window end", []apitypes.PolicyRule{win(apitypes.TimeWindow{Start: "09:00", End: "9pm", Timezone: "UTC"})}, []string{`end "9pm"`}},
			{"bad window day", []apitypes.PolicyRule{win(apitypes.TimeWindow{Days: []string{"monday"}, Start: "09:00", End: "17:00"})}, []string{`"monday"`}},
			{"empty window", []apitypes.PolicyRule{win(apitypes.TimeWindow{Start: "09:00", End: "09:00"})}, []string{`"09:00"`}},
			{"unknown timezone", []apitypes.PolicyRule{win(apitypes.TimeWindow{Start: "09:00", End: "17:00", Timezone: "Mars/Olympus_Mons"})}, []string{`unknown timezone "Mars/Olympus_Mons"`}},
			{"no rules", nil, []string{"no rules"}},
		}
		for _, tc := range cases {
			_, err := aclPutPolicy(ctx, rootF, "bad", tc.rules...)
			e := aclWantCode(t, err, errs.InvalidArgument, tc.name)
			aclWantMessage(t, e, tc.name, tc.want...)
		}
		_, err := aclPutPolicy(ctx, root, "Bad Name", aclAllow("*", "*"))
		aclWantCode(t, err, errs.InvalidArgument, "bad policy name")
		var gp apitypes.GetPolicyResponse
		err = root.Do(ctx, "getPolicy", &apitypes.GetPolicyRequest{Name: "bad", ReadOptions: apitypes.ReadOptions{Consistency: "leader"}}, &gp)
		aclWantCode(t, err, errs.NotFound, "a rejected policy was stored")
	})

	t.Run("BuiltinsImmutable", func(t *testing.T) {
		for _, name := range []string{"admin", "secrets-read-access", "secrets-reader", "secrets-writer", "kms-admin"} {
			_, err := aclPutPolicy(ctx, rootF, name, aclAllow("getSecretValue", "*"))
			aclWantCode(t, err, errs.FailedPrecondition, "put built-in "+name)
			_, err = aclDeletePolicy(ctx, rootF, name)
			aclWantCode(t, err, errs.FailedPrecondition, "delete built-in "+name)
		}
		var lp apitypes.ListPoliciesResponse
		if err := root.Do(ctx, "listPolicies", &apitypes.ListPoliciesRequest{}, &lp); err != nil {
			t.Fatal(err)
		}
		builtins := map[string]bool{}
		for _, p := range lp.Policies {
			if p.BuiltIn {
				builtins[p.Name] = true
			}
		}
		for _, name := range []string{"admin", "secrets-read-access", "secrets-reader", "secrets-writer", "kms-admin"} {
			if !builtins[name] {
				t.Errorf("listPolicies: built-in %s missing or not marked built_in", name)
			}
		}
		// admin still does everything.
		if _, err := root.Cluster(ctx, &apitypes.ClusterRequest{}); err != nil {
			t.Fatalf("admin after attempts to change built-ins: %v", err)
		}
	})

	t.Run("CreateTokenWithUnknownPolicy", func(t *testing.T) {
		_, err := rootF.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "x", Policies: []string{"secrets-reader", "no-such-policy"}})
		e := aclWantCode(t, err, errs.InvalidArgument, "createToken with a nonexistent policy")
		aclWantMessage(t, e, "unknown policy", "no-such-policy")
		// The deleted "app" policy can't be granted any more either.
		_, err = root.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "x", Policies: []string{"app"}})
		aclWantCode(t, err, errs.InvalidArgument, "createToken with a deleted policy")
	})
}

// TestACLSysActionsNeedAdmin: /v1/sys/* needs the admin policy by name; a
// custom allow-everything policy is not enough.
func TestACLSysActionsNeedAdmin(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	aclOK[uint64](t, "putPolicy everything")(aclPutPolicy(ctx, root, "everything", aclAllow("*", "*")))
	tokens := map[string]*apitypes.CreateTokenResponse{}
	for _, p := range []string{"kms-admin", "secrets-writer", "everything"} {
		tokens[p] = aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: p, Policies: []string{p}})
	}
	for p, tok := range tokens {
		for i, n := range c.Nodes {
			cl := c.ClientWithToken(i, tok.Token)
			_, err := cl.Cluster(ctx, &apitypes.ClusterRequest{})
			e := aclWantCode(t, err, errs.PermissionDenied, p+" on "+n.ID+": sys/cluster")
			aclWantMessage(t, e, "sys denial", "admin")
			err = cl.Snapshot(ctx, io.Discard)
			aclWantCode(t, err, errs.PermissionDenied, p+" on "+n.ID+": sys/snapshot")
			_, err = cl.TransferLeadership(ctx, &apitypes.TransferLeadershipRequest{})
			aclWantCode(t, err, errs.PermissionDenied, p+" on "+n.ID+": sys/transferLeadership")
			_, err = cl.RemovePeer(ctx, &apitypes.RemovePeerRequest{NodeID: "n2"})
			aclWantCode(t, err, errs.PermissionDenied, p+" on "+n.ID+": sys/removePeer")
		}
		for _, path := range []string{"/v1/sys/cluster", "/v1/sys/snapshot"} {
			req, _ := http.NewRequest(http.MethodPost, c.Nodes[0].URL+path, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+tok.Token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("%s with %s: HTTP %d, want 403", path, p, resp.StatusCode)
			}
		}
	}
	// admin may, and a snapshot holds no token.
	var snap bytes.Buffer
	if err := c.Client(c.Followers()[0]).Snapshot(ctx, &snap); err != nil {
		t.Fatalf("admin snapshot: %v", err)
	}
	for p, tok := range tokens {
		if bytes.Contains(snap.Bytes(), []byte(tok.Token)) {
			t.Errorf("snapshot contains the %s token", p)
		}
	}
	if bytes.Contains(snap.Bytes(), []byte(c.RootToken)) {
		t.Errorf("snapshot contains the root token")
	}
}

// ---------------------------------------------------------------- auditor

func TestAuditorNeverGetsAValue(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	const v1, v2 = "auditor-must-not-see-db", "auditor-must-not-see-cache"
	aclCreateSecret(t, ctx, root, aclPathDB, v1, nil)
	aclCreateSecret(t, ctx, root, aclPathCache, v2, nil)
	aud := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "auditor", Policies: []string{"secrets-read-access"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)
	ro := apitypes.ReadOptions{MinIndex: idx}
	forbidden := [][]byte{
		[]byte(v1), []byte(v2),
		[]byte(base64.StdEncoding.EncodeToString([]byte(v1))), []byte(base64.StdEncoding.EncodeToString([]byte(v2))),
	}
	noValue := func(what string, raw []byte) {
		t.Helper()
		for _, f := range forbidden {
			if bytes.Contains(raw, f) {
				t.Fatalf("%s: the answer contains a value: %s", what, raw)
			}
		}
	}
	call := func(cl *client.Client, action string, req any) (json.RawMessage, error) {
		var raw json.RawMessage
		err := cl.Do(ctx, action, req, &raw)
		return raw, err
	}
	for i, n := range c.Nodes {
		cl := c.ClientWithToken(i, aud.Token)
		for _, p := range []string{aclPathDB, aclPathCache} {
			raw, err := call(cl, "getSecretValue", &apitypes.GetSecretValueRequest{Path: p, ReadOptions: ro})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": auditor getSecretValue "+p)
			noValue("getSecretValue", raw)
			_, err = call(cl, "getSecretValue", &apitypes.GetSecretValueRequest{Path: p, Version: 1, ReadOptions: ro})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": auditor getSecretValue version 1")
			_, err = call(cl, "getSecretValue", &apitypes.GetSecretValueRequest{Path: p, ReadOptions: apitypes.ReadOptions{Consistency: "leader"}})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": auditor getSecretValue leader")
		}
		raw, err := call(cl, "batchGetSecretValue", &apitypes.BatchGetSecretValueRequest{Paths: []string{aclPathDB, aclPathCache, "/app/prod/api/missing"}, ReadOptions: ro})
		if err != nil {
			t.Fatalf("%s: batchGetSecretValue: %v", n.ID, err)
		}
		noValue("batchGetSecretValue", raw)
		var bg apitypes.BatchGetSecretValueResponse
		if err := json.Unmarshal(raw, &bg); err != nil {
			t.Fatal(err)
		}
		if len(bg.Values) != 0 {
			t.Fatalf("%s: batch gave the auditor %d values", n.ID, len(bg.Values))
		}
		for _, p := range []string{aclPathDB, aclPathCache, "/app/prod/api/missing"} {
			if bg.Errors[p].Code != string(errs.PermissionDenied) {
				t.Fatalf("%s: batch error for %s = %+v, want PermissionDenied (errors %+v)", n.ID, p, bg.Errors[p], bg.Errors)
			}
		}
		// Metadata and history do work, and carry no value.
		raw, err = call(cl, "describeSecret", &apitypes.DescribeSecretRequest{Path: aclPathDB, ReadOptions: ro})
		if err != nil {
			t.Fatalf("%s: auditor describeSecret: %v", n.ID, err)
		}
		noValue("describeSecret", raw)
		var ds apitypes.DescribeSecretResponse
		_ = json.Unmarshal(raw, &ds)
		if len(ds.Secret.Versions) != 1 || ds.Secret.Versions[0].Size != len(v1) {
			t.Fatalf("%s: describe versions %+v", n.ID, ds.Secret.Versions)
		}
		raw, err = call(cl, "listSecrets", &apitypes.ListSecretsRequest{Prefix: "/", Recursive: true, ReadOptions: ro})
		if err != nil {
			t.Fatalf("%s: auditor listSecrets: %v", n.ID, err)
		}
		noValue("listSecrets", raw)
		var ls apitypes.ListSecretsResponse
		_ = json.Unmarshal(raw, &ls)
		if len(ls.Secrets) != 2 {
			t.Fatalf("%s: auditor lists %d secrets, want 2", n.ID, len(ls.Secrets))
		}
		raw, err = call(cl, "queryAudit", &apitypes.QueryAuditRequest{Limit: 1000, ReadOptions: apitypes.ReadOptions{Consistency: "leader"}})
		if err != nil {
			t.Fatalf("%s: auditor queryAudit: %v", n.ID, err)
		}
		noValue("queryAudit", raw)
		// Writes that would set a value are denied too.
		_, err = cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: aclPathDB, Value: []byte("x")})
		aclWantCode(t, err, errs.PermissionDenied, n.ID+": auditor putSecretValue")
		_, err = cl.GenerateSecret(ctx, &apitypes.GenerateSecretRequest{Path: aclPathDB})
		aclWantCode(t, err, errs.PermissionDenied, n.ID+": auditor generateSecret")
	}
	// Every value attempt of the auditor is in the trail as denied, with a reason.
	es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: aud.Accessor, Actions: []string{"secrets.get_value", "kms.decrypt"}})
	denied := aclFilterEntries(es, func(e apitypes.AuditEntry) bool { return e.Result == apitypes.ResultDenied && e.Reason != "" })
	if len(es) == 0 || len(denied) != len(es) {
		t.Fatalf("auditor value reads in the audit trail: %d, denied with a reason: %d: %+v", len(es), len(denied), es)
	}
	// 3 nodes x (2 paths x 3 gets + 3 batch paths)
	if len(es) != 3*(2*3+3) {
		t.Errorf("auditor value reads audited: %d entries, want %d", len(es), 3*(2*3+3))
	}
}

// ---------------------------------------------------------------- source address

func TestSourceAddressConditions(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 45*time.Second)
	leader := c.Leader()
	root := c.Client(leader)
	const pathBG = "/app/prod/api/breakglass"
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	aclCreateSecret(t, ctx, root, pathBG, "bg-pass", &apitypes.AccessPolicy{SourceCIDRs: []string{"127.0.0.1/32"}})

	t.Run("PolicyRuleSourceCIDRs", func(t *testing.T) {
		r := aclAllow("getSecretValue", "/app/prod/api/*")
		r.Conditions = &apitypes.PolicyConditions{SourceCIDRs: []string{"127.0.0.1/32"}}
		aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "local-app", r))
		tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "local-app", Policies: []string{"local-app"}})
		idx := root.LastIndex()
		aclWaitApplied(t, c, idx)
		for _, n := range c.Nodes {
			if v, err := aclGetValue(ctx, aclClientFrom(t, n.URL, tok.Token, aclIpOne, ""), aclPathDB, idx); err != nil || v != "db-pass" {
				t.Fatalf("%s from %s: %q %v", n.ID, aclIpOne, v, err)
			}
			_, err := aclGetValue(ctx, aclClientFrom(t, n.URL, tok.Token, aclIpTwo, ""), aclPathDB, idx)
			e := aclWantCode(t, err, errs.PermissionDenied, n.ID+" from "+aclIpTwo)
			aclWantMessage(t, e, "condition reason", `policy "local-app"`, "source 127.0.0.2", "source_cidrs")
		}
		es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: tok.Accessor, PathPrefix: aclPathDB, Actions: []string{"secrets.get_value"}})
		den := aclFilterEntries(es, func(e apitypes.AuditEntry) bool { return e.Result == apitypes.ResultDenied })
		if len(den) != 3 {
			t.Fatalf("denied reads audited: %d, want 3: %+v", len(den), es)
		}
		for _, e := range den {
			if e.SourceIP != aclIpTwo || e.ErrorCode != string(errs.PermissionDenied) || !strings.Contains(e.Reason, "source_cidrs") {
				t.Fatalf("denied entry %+v", e)
			}
		}
	})

	t.Run("SecretAccessPolicySourceCIDRs", func(t *testing.T) {
		aclOK[uint64](t, "putPolicy rw")(aclPutPolicy(ctx, root, "rw", aclAllow("getSecretValue,describeSecret,listSecrets,putSecretValue,updateSecret,batchGetSecretValue", "/app/*")))
		tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "rw", Policies: []string{"rw"}})
		idx := root.LastIndex()
		aclWaitApplied(t, c, idx)
		for _, n := range c.Nodes {
			from1 := aclClientFrom(t, n.URL, tok.Token, aclIpOne, "")
			from2 := aclClientFrom(t, n.URL, tok.Token, aclIpTwo, "")
			if v, err := aclGetValue(ctx, from1, pathBG, idx); err != nil || v != "bg-pass" {
				t.Fatalf("%s from %s: %q %v", n.ID, aclIpOne, v, err)
			}
			_, err := aclGetValue(ctx, from2, pathBG, idx)
			e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": access policy from "+aclIpTwo)
			aclWantMessage(t, e, "access policy reason", "source 127.0.0.2", "source_cidrs")
			// Only the restricted secret: the other one reads fine from .2.
			if _, err := aclGetValue(ctx, from2, aclPathDB, idx); err != nil {
				t.Fatalf("%s: unrestricted secret from %s: %v", n.ID, aclIpTwo, err)
			}
			// describeSecret and listSecrets are not restricted by it.
			if _, err := from2.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: pathBG, ReadOptions: apitypes.ReadOptions{MinIndex: idx}}); err != nil {
				t.Fatalf("%s: describeSecret from %s: %v", n.ID, aclIpTwo, err)
			}
			ls, err := from2.ListSecrets(ctx, &apitypes.ListSecretsRequest{Prefix: "/app/prod/api/", ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
			if err != nil || len(ls.Secrets) != 2 {
				t.Fatalf("%s: listSecrets from %s: %+v %v", n.ID, aclIpTwo, ls, err)
			}
			// Every other action is: batch get, a write, an update.
			bg, err := from2.BatchGetSecretValue(ctx, &apitypes.BatchGetSecretValueRequest{Paths: []string{pathBG, aclPathDB}})
			if err != nil || len(bg.Values) != 1 || bg.Values[0].Path != aclPathDB || bg.Errors[pathBG].Code != string(errs.PermissionDenied) {
				t.Fatalf("%s: batch from %s: %+v %v", n.ID, aclIpTwo, bg, err)
			}
			_, err = from2.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: pathBG, Value: []byte("x")})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": put from "+aclIpTwo)
			desc := "changed"
			_, err = from2.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: pathBG, Description: &desc})
			aclWantCode(t, err, errs.PermissionDenied, n.ID+": update from "+aclIpTwo)
		}
		// A write from .1 through a follower passes the apply-time check,
		// which uses the original client's address.
		f := c.Followers()[0]
		put, err := aclClientFrom(t, c.Nodes[f].URL, tok.Token, aclIpOne, "").PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: pathBG, Value: []byte("bg-2")})
		if err != nil || put.Version != 2 {
			t.Fatalf("put from %s through follower: %+v %v", aclIpOne, put, err)
		}
		es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: tok.Accessor, PathPrefix: pathBG})
		den := aclFilterEntries(es, func(e apitypes.AuditEntry) bool { return e.Result == apitypes.ResultDenied })
		byAction := map[string]int{}
		for _, e := range den {
			byAction[e.Action]++
			if e.SourceIP != aclIpTwo || !strings.Contains(e.Reason, "source_cidrs") || e.ErrorCode != string(errs.PermissionDenied) {
				t.Fatalf("denied entry: %+v", e)
			}
		}
		// per node: get + batch path = 2 get_value, 1 put_value, 1 update
		if byAction["secrets.get_value"] != 6 || byAction["secrets.put_value"] != 3 || byAction["secrets.update"] != 3 {
			t.Fatalf("denials audited by action: %v", byAction)
		}
		for _, e := range es {
			if e.Action == "secrets.describe" && e.Result != apitypes.ResultOK {
				t.Fatalf("describe audited as %+v", e)
			}
		}
	})

	t.Run("TokenSourceCIDRs", func(t *testing.T) {
		tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "pinned", Policies: []string{"secrets-reader"}, SourceCIDRs: []string{"127.0.0.1/32"}})
		idx := root.LastIndex()
		aclWaitApplied(t, c, idx)
		for _, n := range c.Nodes {
			from1 := aclClientFrom(t, n.URL, tok.Token, aclIpOne, "")
			w, err := from1.Whoami(ctx, &apitypes.WhoamiRequest{ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
			if err != nil || w.Accessor != tok.Accessor || len(w.SourceCIDRs) != 1 {
				t.Fatalf("%s: whoami from %s: %+v %v", n.ID, aclIpOne, w, err)
			}
			if _, err := aclGetValue(ctx, from1, aclPathDB, idx); err != nil {
				t.Fatalf("%s: read from %s: %v", n.ID, aclIpOne, err)
			}
			from2 := aclClientFrom(t, n.URL, tok.Token, aclIpTwo, "")
			_, err = from2.Whoami(ctx, &apitypes.WhoamiRequest{})
			e := aclWantCode(t, err, errs.Unauthenticated, n.ID+": pinned token from "+aclIpTwo)
			aclWantMessage(t, e, "token cidr", "127.0.0.2")
			_, err = aclGetValue(ctx, from2, aclPathDB, idx)
			aclWantCode(t, err, errs.Unauthenticated, n.ID+": pinned token read from "+aclIpTwo)
		}
		_, err := root.CreateToken(ctx, &apitypes.CreateTokenRequest{Name: "bad", Policies: []string{"secrets-reader"}, SourceCIDRs: []string{"127.0.0.1"}})
		aclWantCode(t, err, errs.InvalidArgument, "token with a bad CIDR")
	})
}

// TestForwardedWriteKeepsPrincipalAndSource: a write sent to a follower is
// committed by the leader with the original caller and client address.
func TestForwardedWriteKeepsPrincipalAndSource(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	f := c.Followers()[0]
	// Only clients at 127.0.0.2 may write: if the leader took the forwarding
	// node (127.0.0.1) for the caller, the apply-time re-check would deny.
	r := aclAllow("createSecret,putSecretValue,describeSecret", "/app/*")
	r.Conditions = &apitypes.PolicyConditions{SourceCIDRs: []string{"127.0.0.2/32"}}
	aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "writer-at-2", r))
	tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "deployer", Policies: []string{"writer-at-2"}})
	aclWaitApplied(t, c, root.LastIndex())
	cl := aclClientFrom(t, c.Nodes[f].URL, tok.Token, aclIpTwo, "")
	aclOK[*apitypes.CreateSecretResponse](t, "create through follower")(cl.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: aclPathDB}))
	put := aclOK[*apitypes.PutSecretValueResponse](t, "put through follower")(cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: aclPathDB, Value: []byte("v1")}))
	// The same token from 127.0.0.1 is refused.
	_, err := aclClientFrom(t, c.Nodes[f].URL, tok.Token, aclIpOne, "").PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: aclPathDB, Value: []byte("v2")})
	aclWantCode(t, err, errs.PermissionDenied, "put from 127.0.0.1")

	es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{PathPrefix: aclPathDB, Actions: []string{"secrets.create", "secrets.put_value", "kms.encrypt"}})
	okEntries := aclFilterEntries(es, func(e apitypes.AuditEntry) bool { return e.Result == apitypes.ResultOK })
	if len(okEntries) != 3 {
		t.Fatalf("want create, put_value, encrypt ok entries, got %+v", es)
	}
	for _, e := range okEntries {
		if e.Principal.Accessor != tok.Accessor || e.Principal.Name != "deployer" {
			t.Errorf("%s: principal %+v, want %s/deployer", e.Action, e.Principal, tok.Accessor)
		}
		if e.SourceIP != aclIpTwo {
			t.Errorf("%s: source_ip %q, want %s", e.Action, e.SourceIP, aclIpTwo)
		}
		if e.Node != c.Nodes[f].ID {
			t.Errorf("%s: node %q, want the receiving follower %s", e.Action, e.Node, c.Nodes[f].ID)
		}
	}
	d := aclOK[*apitypes.DescribeSecretResponse](t, "describe")(root.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: aclPathDB, ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}}))
	if d.Secret.CreatedBy != tok.Accessor || d.Secret.Versions[0].CreatedBy != tok.Accessor || d.Secret.CurrentVersion != 1 {
		t.Errorf("created_by %q / %q, want %s; current %d", d.Secret.CreatedBy, d.Secret.Versions[0].CreatedBy, tok.Accessor, d.Secret.CurrentVersion)
	}
}

// ---------------------------------------------------------------- X-Forwarded-For

func TestForwardedForTrustedProxy(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	const pathX = "/app/prod/api/xff"
	aclCreateSecret(t, ctx, root, pathX, "xff-pass", &apitypes.AccessPolicy{SourceCIDRs: []string{"10.9.9.0/24"}})
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	r := aclAllow("getSecretValue,putSecretValue", "/app/prod/api/*")
	r.Conditions = &apitypes.PolicyConditions{SourceCIDRs: []string{"10.9.9.0/24"}}
	aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "office", r))
	tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "behind-proxy", Policies: []string{"office"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)

	for _, n := range c.Nodes {
		// Through the trusted proxy (127.0.0.1) for client 10.9.9.9.
		viaProxy := aclClientFrom(t, n.URL, tok.Token, aclIpOne, "10.9.9.9")
		if v, err := aclGetValue(ctx, viaProxy, pathX, idx); err != nil || v != "xff-pass" {
			t.Fatalf("%s: via trusted proxy: %q %v", n.ID, v, err)
		}
		// The proxy itself, without the header, is not in 10.9.9.0/24.
		_, err := aclGetValue(ctx, aclClientFrom(t, n.URL, tok.Token, aclIpOne, ""), aclPathDB, idx)
		e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": trusted proxy without the header")
		aclWantMessage(t, e, "no header", "source 127.0.0.1")
		// An untrusted peer can't claim an address.
		_, err = aclGetValue(ctx, aclClientFrom(t, n.URL, tok.Token, aclIpTwo, "10.9.9.9"), aclPathDB, idx)
		e = aclWantCode(t, err, errs.PermissionDenied, n.ID+": untrusted peer with the header")
		aclWantMessage(t, e, "untrusted", "source 127.0.0.2")
		// Plain net/http with the header.
		status, body := aclRawPost(t, aclHttpFrom(t, aclIpOne, ""), n.URL, "getSecretValue", tok.Token,
			map[string]any{"path": aclPathDB}, map[string]string{"X-Forwarded-For": "10.9.9.9"})
		if status != http.StatusOK {
			t.Fatalf("%s: raw via proxy: HTTP %d %s", n.ID, status, body)
		}
		status, body = aclRawPost(t, aclHttpFrom(t, aclIpTwo, ""), n.URL, "getSecretValue", tok.Token,
			map[string]any{"path": aclPathDB}, map[string]string{"X-Forwarded-For": "10.9.9.9"})
		if status != http.StatusForbidden {
			t.Fatalf("%s: raw from untrusted peer: HTTP %d %s", n.ID, status, body)
		}
	}
	// A spoofed hop to the left of the proxy-appended one is not used: the
	// rightmost untrusted address is the client.
	_, err := aclGetValue(ctx, aclClientFrom(t, c.Nodes[0].URL, tok.Token, aclIpOne, "10.9.9.9, 192.0.2.7"), aclPathDB, idx)
	aclWantCode(t, err, errs.PermissionDenied, "rightmost untrusted hop decides")

	// A write through a follower keeps the proxied client's address.
	f := c.Followers()[0]
	aclOK[*apitypes.PutSecretValueResponse](t, "put via proxy through follower")(
		aclClientFrom(t, c.Nodes[f].URL, tok.Token, aclIpOne, "10.9.9.9").PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: pathX, Value: []byte("v2")}))

	es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: tok.Accessor})
	count := map[string]int{}
	for _, e := range es {
		count[e.Result+" "+e.SourceIP]++
		switch {
		case e.Result == apitypes.ResultOK && e.SourceIP != "10.9.9.9":
			t.Errorf("ok entry with source_ip %q: %+v", e.SourceIP, e)
		case e.Result == apitypes.ResultDenied && e.SourceIP == "10.9.9.9":
			t.Errorf("denied entry for the proxied client: %+v", e)
		}
	}
	// per node: get_value+decrypt (client) and (raw) ok; put_value+encrypt once.
	if count["ok 10.9.9.9"] != 3*4+2 || count["denied 127.0.0.1"] != 3 || count["denied 127.0.0.2"] != 6 || count["denied 192.0.2.7"] != 1 {
		t.Fatalf("audit entries by result and source: %v", count)
	}
}

func TestForwardedForIgnoredWithoutTrustedProxies(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	const pathX = "/app/prod/api/xff"
	aclCreateSecret(t, ctx, root, pathX, "xff-pass", &apitypes.AccessPolicy{SourceCIDRs: []string{"10.9.9.0/24"}})
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "spoofer", Policies: []string{"secrets-reader"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)
	for _, n := range c.Nodes {
		cl := aclClientFrom(t, n.URL, tok.Token, aclIpOne, "10.9.9.9")
		_, err := aclGetValue(ctx, cl, pathX, idx)
		e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": header without trusted proxies")
		aclWantMessage(t, e, "header ignored", "source 127.0.0.1")
		if _, err := aclGetValue(ctx, cl, aclPathDB, idx); err != nil {
			t.Fatalf("%s: %v", n.ID, err)
		}
	}
	es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: tok.Accessor, Actions: []string{"secrets.get_value"}})
	if len(es) != 6 {
		t.Fatalf("want 6 get_value entries, got %d", len(es))
	}
	for _, e := range es {
		if e.SourceIP != aclIpOne {
			t.Fatalf("source_ip %q, want %s (X-Forwarded-For must be ignored): %+v", e.SourceIP, aclIpOne, e)
		}
	}
}

// ---------------------------------------------------------------- time windows

func aclClock(m int) string {
	m = ((m % 1440) + 1440) % 1440
	return fmt.Sprintf("%02d:%02d", m/60, m%60)
}

func TestTimeWindowAccessPolicy(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	now := time.Now().UTC()
	nowMin := now.Hour()*60 + now.Minute()

	// A one-minute window 12 hours away (UTC): never open during the test.
	closed := &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Start: aclClock(nowMin + 720), End: aclClock(nowMin + 721), Timezone: "UTC"}}}
	// A 23-hour window in Berlin starting an hour ago and ending an hour
	// before that: it crosses local midnight (unless now is between 01:00 and
	// 02:00 there) and includes now. It is listed for the day it starts on.
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	startAt := now.Add(-time.Hour).In(berlin)
	day := strings.ToLower(startAt.Weekday().String()[:3])
	bm := startAt.Hour()*60 + startAt.Minute()
	open := &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{{Days: []string{day}, Start: aclClock(bm), End: aclClock(bm - 60), Timezone: "Europe/Berlin"}}}
	t.Logf("closed window %+v, open window %+v", closed.TimeWindows[0], open.TimeWindows[0])

	const pClosed, pOpen = "/app/prod/api/closed", "/app/prod/api/open"
	aclCreateSecret(t, ctx, root, pClosed, "closed-pass", closed)
	aclCreateSecret(t, ctx, root, pOpen, "open-pass", open)
	tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "oncall", Policies: []string{"secrets-reader", "secrets-writer"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)
	for i, n := range c.Nodes {
		cl := c.ClientWithToken(i, tok.Token)
		_, err := aclGetValue(ctx, cl, pClosed, idx)
		e := aclWantCode(t, err, errs.PermissionDenied, n.ID+": outside the window")
		aclWantMessage(t, e, "window reason", "time windows")
		if _, err := cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: pClosed, ReadOptions: apitypes.ReadOptions{MinIndex: idx}}); err != nil {
			t.Fatalf("%s: describe outside the window: %v", n.ID, err)
		}
		if v, err := aclGetValue(ctx, cl, pOpen, idx); err != nil || v != "open-pass" {
			t.Fatalf("%s: inside the window: %q %v", n.ID, v, err)
		}
	}
	// A write outside the window, through a follower, is refused too.
	f := c.Followers()[0]
	_, err = c.ClientWithToken(f, tok.Token).PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: pClosed, Value: []byte("x")})
	aclWantCode(t, err, errs.PermissionDenied, "write outside the window")

	es := aclAuditEntries(t, ctx, root, apitypes.QueryAuditRequest{Principal: tok.Accessor, PathPrefix: pClosed})
	den := aclFilterEntries(es, func(e apitypes.AuditEntry) bool { return e.Result == apitypes.ResultDenied })
	if len(den) != 4 {
		t.Fatalf("denials audited: %d, want 4 (3 reads, 1 write): %+v", len(den), es)
	}
	for _, e := range den {
		if !strings.Contains(e.Reason, "time windows") {
			t.Fatalf("denied entry without the window in its reason: %+v", e)
		}
	}

	// Access policies bind every caller, admins included: even root can't
	// change or delete the secret from outside its window.
	_, err = root.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: pClosed, AccessPolicy: open})
	aclWantCode(t, err, errs.PermissionDenied, "root updating a secret outside its window")
	_, err = root.DeleteSecret(ctx, &apitypes.DeleteSecretRequest{Path: pClosed})
	aclWantCode(t, err, errs.PermissionDenied, "root deleting a secret outside its window")

	// Changing an access policy (from inside it) takes effect on every node;
	// an empty access policy clears it.
	up := aclOK[*apitypes.UpdateSecretResponse](t, "clear")(root.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: pOpen, AccessPolicy: &apitypes.AccessPolicy{}}))
	if up.Secret.AccessPolicy != nil {
		t.Fatalf("empty access policy did not clear it: %+v", up.Secret.AccessPolicy)
	}
	up = aclOK[*apitypes.UpdateSecretResponse](t, "close")(root.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: pOpen, AccessPolicy: closed}))
	for i, n := range c.Nodes {
		_, err := aclGetValue(ctx, c.ClientWithToken(i, tok.Token), pOpen, up.Index)
		aclWantCode(t, err, errs.PermissionDenied, n.ID+": after closing the window")
	}

	// The same condition in a policy rule.
	r := aclAllow("getSecretValue", "*")
	r.Conditions = &apitypes.PolicyConditions{TimeWindows: closed.TimeWindows}
	aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "night-shift", r))
	ns := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "night", Policies: []string{"night-shift"}})
	aclWaitApplied(t, c, root.LastIndex())
	_, err = aclGetValue(ctx, c.ClientWithToken(f, ns.Token), aclPathDB, root.LastIndex())
	e := aclWantCode(t, err, errs.PermissionDenied, "policy rule outside its window")
	aclWantMessage(t, e, "rule window", `policy "night-shift"`, "time_windows")

	// Invalid windows in an access policy are rejected with the bad part named.
	for _, w := range []apitypes.TimeWindow{
		{Start: "09:00", End: "17:00", Timezone: "Europe/Berlinn"},
		{Start: "9:00", End: "17:00", Timezone: "UTC"},
		{Days: []string{"Mon"}, Start: "09:00", End: "17:00"},
	} {
		_, err := root.UpdateSecret(ctx, &apitypes.UpdateSecretRequest{Path: pOpen, AccessPolicy: &apitypes.AccessPolicy{TimeWindows: []apitypes.TimeWindow{w}}})
		e := aclWantCode(t, err, errs.InvalidArgument, fmt.Sprintf("window %+v", w))
		aclWantMessage(t, e, "bad window", "access_policy", "time_windows[0]")
	}
}

// ---------------------------------------------------------------- revocation and expiry

func TestTokenRevocationAndExpiry(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 45*time.Second)
	leader := c.Leader()
	root := c.Client(leader)
	fol := c.Followers()
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)

	short := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "short", Policies: []string{"secrets-reader"}, TTL: "2s"})
	created := time.Now()
	if short.ExpiresAt == nil || short.ExpiresAt.Sub(created) > 3*time.Second {
		t.Fatalf("expires_at %v", short.ExpiresAt)
	}
	rev := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "to-revoke", Policies: []string{"secrets-reader", "secrets-writer"}})
	keep := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "keeper", Policies: []string{"secrets-reader"}})
	idx := root.LastIndex()
	aclWaitApplied(t, c, idx)
	for i, n := range c.Nodes {
		for _, tk := range []*apitypes.CreateTokenResponse{short, rev, keep} {
			if _, err := aclGetValue(ctx, c.ClientWithToken(i, tk.Token), aclPathDB, idx); err != nil {
				if time.Since(created) > 2*time.Second {
					t.Skipf("machine too slow to use a 2s token before it expires (%v)", time.Since(created))
				}
				t.Fatalf("%s: token works before expiry/revocation: %v", n.ID, err)
			}
		}
	}

	// Expiry: nobody acts; every node stops accepting the token.
	expired := map[int]bool{}
	aclWaitFor(t, 15*time.Second, "the 2s token to expire on every node", func() error {
		for i := range c.Nodes {
			if expired[i] {
				continue
			}
			_, err := c.ClientWithToken(i, short.Token).Whoami(ctx, &apitypes.WhoamiRequest{})
			switch {
			case err == nil:
				return fmt.Errorf("%s still accepts it", c.Nodes[i].ID)
			case errs.Is(err, errs.Unauthenticated):
				expired[i] = true
			default:
				t.Fatalf("%s: %v", c.Nodes[i].ID, err)
			}
		}
		return nil
	})
	if since := time.Since(created); since < 1500*time.Millisecond {
		t.Fatalf("token stopped working after %v, before its 2s TTL", since)
	}
	for i, n := range c.Nodes {
		_, err := aclGetValue(ctx, c.ClientWithToken(i, short.Token), aclPathDB, 0)
		aclWantCode(t, err, errs.Unauthenticated, n.ID+": read with an expired token")
		status, body := aclRawPost(t, http.DefaultClient, n.URL, "getSecretValue", short.Token, map[string]any{"path": aclPathDB}, nil)
		if status != http.StatusUnauthorized {
			t.Fatalf("%s: expired token: HTTP %d %s", n.ID, status, body)
		}
	}

	// Revocation through a follower: every node refuses the token, for
	// reads and writes; other tokens keep working.
	ri := aclOK[*apitypes.IndexResponse](t, "revoke")(c.Client(fol[0]).RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: rev.Accessor})).Index
	for i, n := range c.Nodes {
		cl := c.ClientWithToken(i, rev.Token)
		aclWaitFor(t, 5*time.Second, n.ID+" to refuse the revoked token", func() error {
			_, err := cl.Whoami(ctx, &apitypes.WhoamiRequest{})
			if errs.Is(err, errs.Unauthenticated) {
				return nil
			}
			return fmt.Errorf("whoami: %v", err)
		})
		_, err := cl.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: aclPathDB, Value: []byte("x")})
		aclWantCode(t, err, errs.Unauthenticated, n.ID+": write with a revoked token")
		if _, err := aclGetValue(ctx, c.ClientWithToken(i, keep.Token), aclPathDB, ri); err != nil {
			t.Fatalf("%s: another token after the revocation: %v", n.ID, err)
		}
	}
	_, err := root.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: rev.Accessor})
	aclWantCode(t, err, errs.NotFound, "revoking twice")

	// listTokens: accessors and metadata, never a token or its hash.
	var raw json.RawMessage
	if err := c.Client(fol[1]).Do(ctx, "listTokens", &apitypes.ListTokensRequest{ReadOptions: apitypes.ReadOptions{MinIndex: ri}}, &raw); err != nil {
		t.Fatal(err)
	}
	var lt struct {
		Tokens []map[string]any `json:"tokens"`
	}
	if err := json.Unmarshal(raw, &lt); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"accessor": true, "name": true, "policies": true, "created_at": true, "expires_at": true, "source_cidrs": true}
	accessors := map[string]bool{}
	for _, tk := range lt.Tokens {
		for k := range tk {
			if !allowed[k] {
				t.Errorf("listTokens has field %q: %v", k, tk)
			}
		}
		accessors[fmt.Sprint(tk["accessor"])] = true
	}
	if !accessors[keep.Accessor] || accessors[rev.Accessor] {
		t.Errorf("listTokens accessors %v: want keeper listed, revoked token gone", accessors)
	}
	secrets := []string{c.RootToken, short.Token, rev.Token, keep.Token}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) || bytes.Contains(raw, []byte(acl.HashToken(s))) {
			t.Fatalf("listTokens shows a token or its hash: %s", raw)
		}
	}
	// No token ever reaches a node's disk (Raft log, snapshots, audit file).
	for _, n := range c.Nodes {
		_ = filepath.WalkDir(n.Dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			for _, s := range secrets {
				if bytes.Contains(data, []byte(s)) {
					t.Errorf("%s contains a token", p)
				}
			}
			return nil
		})
	}
}

// TestRevokedTokenRefusedAtMinIndex: a read that asks for a state at or after
// the revocation (min_index) must not be served to the revoked token, on any
// node, however soon it comes after the revocation was acknowledged.
func TestRevokedTokenRefusedAtMinIndex(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	leader := c.Leader()
	root := c.Client(leader)
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	var served []string
	for round := 0; round < 10; round++ {
		tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: fmt.Sprintf("r%d", round), Policies: []string{"secrets-reader"}})
		idx := root.LastIndex()
		aclWaitApplied(t, c, idx)
		// Warm the connections (and make sure every node knows the token).
		clients := make([]*client.Client, len(c.Nodes))
		for i := range c.Nodes {
			clients[i] = c.ClientWithToken(i, tok.Token)
			if _, err := aclGetValue(ctx, clients[i], aclPathDB, idx); err != nil {
				t.Fatal(err)
			}
		}
		ri := aclOK[*apitypes.IndexResponse](t, "revoke")(root.RevokeToken(ctx, &apitypes.RevokeTokenRequest{Accessor: tok.Accessor})).Index
		for i, n := range c.Nodes {
			resp, err := clients[i].GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: aclPathDB, ReadOptions: apitypes.ReadOptions{MinIndex: ri}})
			if err == nil {
				served = append(served, fmt.Sprintf("round %d: %s served %q (answer index %d) at min_index %d; the token was revoked at index %d",
					round, n.ID, resp.Value, resp.Index, ri, ri))
				continue
			}
			aclWantCode(t, err, errs.Unauthenticated, n.ID+": read at min_index of the revocation")
		}
	}
	if len(served) > 0 {
		t.Fatalf("a revoked token read a value from a state that includes its revocation:\n%s", strings.Join(served, "\n"))
	}
}

// TestPolicyChangeSeenAtMinIndex: a read with min_index = the index of a
// policy change must be decided by the changed policy on every node, and its
// answer's index must be at least min_index (SPEC §2 "Consistency").
func TestPolicyChangeSeenAtMinIndex(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx := aclCtx(t, 30*time.Second)
	root := c.Client(c.Leader())
	aclCreateSecret(t, ctx, root, aclPathDB, "db-pass", nil)
	aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "toggle", aclAllow("getSecretValue,describeSecret", "/app/*")))
	tok := aclNewToken(t, ctx, root, apitypes.CreateTokenRequest{Name: "toggle", Policies: []string{"toggle"}})
	clients := make([]*client.Client, len(c.Nodes))
	for i := range c.Nodes {
		clients[i] = c.ClientWithToken(i, tok.Token)
		if _, err := aclGetValue(ctx, clients[i], aclPathDB, root.LastIndex()); err != nil {
			t.Fatal(err)
		}
	}
	var problems []string
	for round := 0; round < 10; round++ {
		allowed := round%2 == 1
		rules := []apitypes.PolicyRule{aclAllow("describeSecret", "/app/*")}
		if allowed {
			rules = append(rules, aclAllow("getSecretValue", "/app/*"))
		}
		idx := aclOK[uint64](t, "putPolicy")(aclPutPolicy(ctx, root, "toggle", rules...))
		for i, n := range c.Nodes {
			resp, err := clients[i].GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: aclPathDB, ReadOptions: apitypes.ReadOptions{MinIndex: idx}})
			switch {
			case allowed && err != nil:
				problems = append(problems, fmt.Sprintf("round %d: %s denied a read the policy at index %d allows: %v", round, n.ID, idx, err))
			case !allowed && err == nil:
				problems = append(problems, fmt.Sprintf("round %d: %s served a read the policy at index %d denies (answer index %d)", round, n.ID, idx, resp.Index))
			case !allowed && !errs.Is(err, errs.PermissionDenied):
				problems = append(problems, fmt.Sprintf("round %d: %s: %v", round, n.ID, err))
			case err == nil && resp.Index < idx:
				problems = append(problems, fmt.Sprintf("round %d: %s answered from index %d < min_index %d", round, n.ID, resp.Index, idx))
			}
		}
	}
	if len(problems) > 0 {
		t.Fatalf("policy changes not in effect at their min_index:\n%s", strings.Join(problems, "\n"))
	}
}
