package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
)

// auditNode is a fake node whose queryAudit answers from a real audit store,
// as a server does; it counts the queries.
type auditNode struct {
	url     string
	queries atomic.Int64
}

func newAuditNode(t *testing.T, entries []apitypes.AuditEntry) *auditNode {
	store := audit.NewMemoryStore()
	if err := store.Append(entries); err != nil {
		t.Fatal(err)
	}
	n := &auditNode{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/queryAudit" {
			http.NotFound(w, r)
			return
		}
		n.queries.Add(1)
		var req apitypes.QueryAuditRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		es, next, err := store.Query(audit.Query{PageToken: req.PageToken, Limit: req.Limit})
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(apitypes.QueryAuditResponse{Entries: es, NextPageToken: next, Index: 1})
	}))
	t.Cleanup(srv.Close)
	n.url = srv.URL
	return n
}

func testChain(n int) []apitypes.AuditEntry {
	var h audit.Head
	out := make([]apitypes.AuditEntry, n)
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i := range out {
		out[i] = apitypes.AuditEntry{Time: t0.Add(time.Duration(i) * time.Millisecond), Node: "n1", RequestID: fmt.Sprintf("r%d", i),
			Action: "secrets.get_value", Principal: apitypes.Principal{Accessor: "acc", Name: "ci"}, SourceIP: "10.0.0.1",
			Path: fmt.Sprintf("/app/s%d", i%7), Version: 1, KMSKey: "default", KMSKeyVersion: 1, Result: apitypes.ResultOK}
		h = h.Append(&out[i])
	}
	return out
}

func writeLines(t *testing.T, entries []apitypes.AuditEntry) string {
	var b []byte
	for i := range entries {
		b = append(entries[i].AppendJSON(b), '\n')
	}
	p := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runAudit(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	a := &app{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return env[k] }, retryWait: time.Millisecond}
	rc := a.run(args)
	return result{rc, out.String(), errb.String()}
}

func TestAuditVerifyFile(t *testing.T) {
	entries := testChain(2500)
	node := newAuditNode(t, entries)
	env := map[string]string{"COFFER_TOKEN": "tok"}
	good := writeLines(t, entries)

	r := runAudit(env, "audit", "verify", "--file", good, "--addr", node.url)
	if r.rc != 0 || !strings.Contains(r.stdout, "OK: 2500 entries (seq 1 to 2500); the hash of seq 2500 is the cluster's") {
		t.Fatalf("good file: %+v", r)
	}
	// Offline (no node given, none in the environment): not anchored.
	r = runAudit(env, "audit", "verify", "--file", good)
	if r.rc != 0 || !strings.Contains(r.stdout, "NOT ANCHORED") || node.queries.Load() != 1 {
		t.Fatalf("offline: %+v (%d queries)", r, node.queries.Load())
	}
	// $COFFER_ADDR anchors too, unless --offline.
	r = runAudit(map[string]string{"COFFER_TOKEN": "tok", "COFFER_ADDR": node.url}, "audit", "verify", "--file", good, "--offline")
	if r.rc != 0 || !strings.Contains(r.stdout, "NOT ANCHORED") {
		t.Fatalf("--offline: %+v", r)
	}

	// Entry 1234's principal changed, every later hash recomputed.
	forged := append([]apitypes.AuditEntry(nil), entries...)
	forged[1233].Principal.Name = "someone-else"
	h := audit.Head{Seq: 1233, Hash: forged[1232].Hash}
	for i := 1233; i < len(forged); i++ {
		h = h.Append(&forged[i])
	}
	bad := writeLines(t, forged)
	if r := runAudit(env, "audit", "verify", "--file", bad); r.rc != 0 {
		t.Fatalf("a recomputed chain passes offline (the gap --addr closes): %+v", r)
	}
	before := node.queries.Load()
	r = runAudit(env, "audit", "verify", "--file", bad, "--addr", node.url)
	if r.rc != 1 || !strings.Contains(r.stdout, "BROKEN: entry 1234 is not the cluster's (it differs in: principal.name, hash)") {
		t.Fatalf("forged file: %+v", r)
	}
	if q := node.queries.Load() - before; q > 6 {
		t.Errorf("%d queries to locate the altered entry among 2500: want a binary search", q)
	}
	r = runAudit(env, "audit", "verify", "--file", bad, "--addr", node.url, "--json")
	var res fileVerifyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.rc != 1 || res.OK || res.FirstBrokenSeq != 1234 || !res.Anchored {
		t.Fatalf("forged file --json: %+v %v", r, err)
	}

	// The file goes on past what the node holds.
	short := newAuditNode(t, entries[:2000])
	r = runAudit(env, "audit", "verify", "--file", good, "--addr", short.url)
	if r.rc != 1 || !strings.Contains(r.stdout, "holds no entry with seq 2500") {
		t.Fatalf("file beyond the node: %+v", r)
	}
	// A file that starts later, altered in its first entry.
	late := append([]apitypes.AuditEntry(nil), entries[2100:]...)
	late[0].SourceIP = "6.6.6.6"
	h = audit.Head{Seq: 2100, Hash: late[0].PrevHash}
	for i := range late {
		h = h.Append(&late[i])
	}
	r = runAudit(env, "audit", "verify", "--file", writeLines(t, late), "--addr", node.url)
	if r.rc != 1 || !strings.Contains(r.stdout, "entry 2101 is not the cluster's (it differs in: source_ip, hash)") {
		t.Fatalf("late file: %+v", r)
	}

	// Strict parsing: a duplicated key.
	b, _ := os.ReadFile(good)
	dup := bytes.Replace(b, []byte(`"result":"ok","prev_hash"`), []byte(`"result":"denied","result":"ok","prev_hash"`), 1)
	p := filepath.Join(t.TempDir(), "dup.jsonl")
	if err := os.WriteFile(p, dup, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runAudit(env, "audit", "verify", "--file", p, "--addr", node.url)
	if r.rc != 1 || !strings.Contains(r.stdout, `BROKEN: line 1: duplicate key "result"`) {
		t.Fatalf("duplicate key: %+v", r)
	}
	if r := runAudit(env, "audit", "verify", "--file", filepath.Join(t.TempDir(), "missing")); r.rc != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("missing file: %+v", r)
	}
	if r := runAudit(env, "audit", "verify", "--offline"); r.rc != 2 {
		t.Fatalf("--offline without --file: %+v", r)
	}
}
