package testcluster_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/internal/testcluster"
)

// tcCtx returns a context bounded by d and cancelled when the test ends.
func tcCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func tcU64(v uint64) *uint64 { return &v }

func tcRandHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tcWantCode fails the test unless err carries code.
func tcWantCode(t testing.TB, err error, code errs.Code, what string) {
	t.Helper()
	if got := errs.CodeOf(err); got != code {
		t.Fatalf("%s: got error %v (code %q), want code %q", what, err, got, code)
	}
}

// tcAllClients returns a root-token client for every running node.
func tcAllClients(c *testcluster.Cluster) map[int]*client.Client {
	out := map[int]*client.Client{}
	for i, tn := range c.Nodes {
		if tn.Running() {
			out[i] = c.Client(i)
		}
	}
	return out
}

// tcLeaderIndex returns the leader's applied state index right now: every
// acknowledged write (and every committed read audit entry) is at or below it.
func tcLeaderIndex(c *testcluster.Cluster) uint64 {
	return c.Nodes[c.Leader()].Node().State().Index
}

func tcGet(ctx context.Context, t testing.TB, cl *client.Client, path string, version, minIndex uint64) (*apitypes.GetSecretValueResponse, error) {
	t.Helper()
	return cl.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: path, Version: version, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
}

// tcMustValue reads path (version 0 = current) with min_index and checks the value.
func tcMustValue(ctx context.Context, t testing.TB, cl *client.Client, path string, version, minIndex uint64, want string) *apitypes.GetSecretValueResponse {
	t.Helper()
	got, err := tcGet(ctx, t, cl, path, version, minIndex)
	if err != nil {
		t.Fatalf("%s: getSecretValue %s v%d (min_index %d): %v", cl.Addr(), path, version, minIndex, err)
	}
	if string(got.Value) != want {
		t.Fatalf("%s: getSecretValue %s v%d = %q (v%d), want %q", cl.Addr(), path, version, got.Value, got.Version, want)
	}
	return got
}

func tcMustDescribe(ctx context.Context, t testing.TB, cl *client.Client, path string, minIndex uint64) *apitypes.DescribeSecretResponse {
	t.Helper()
	d, err := cl.DescribeSecret(ctx, &apitypes.DescribeSecretRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: minIndex}})
	if err != nil {
		t.Fatalf("%s: describeSecret %s: %v", cl.Addr(), path, err)
	}
	return d
}

// tcRawPost sends POST /v1/<action> with a raw JSON body and returns the
// status and body, for checks the SDK hides (HTTP status codes, raw JSON).
func tcRawPost(ctx context.Context, t testing.TB, url, token, action string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/"+action, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", action, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func tcJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
