package testcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/internal/testcluster"
)

func TestWriteOnFollowerReadOnOtherFollower(t *testing.T) {
	c := testcluster.New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := c.Followers()
	w, r := c.Client(f[0]), c.Client(f[1])
	if _, err := w.CreateSecret(ctx, &apitypes.CreateSecretRequest{Path: "/app/prod/api/db"}); err != nil {
		t.Fatal(err)
	}
	put, err := w.PutSecretValue(ctx, &apitypes.PutSecretValueRequest{Path: "/app/prod/api/db", Value: []byte("s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.GetSecretValue(ctx, &apitypes.GetSecretValueRequest{Path: "/app/prod/api/db", ReadOptions: apitypes.ReadOptions{MinIndex: put.Index}})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Value) != "s3cret" || got.Version != 1 {
		t.Fatalf("got %q v%d", got.Value, got.Version)
	}
}
