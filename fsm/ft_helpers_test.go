package fsm

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// ftT0 is the leader clock of the first batch; every batch advances it by 1 s.
var ftT0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()

const (
	ftRootAcc  = "root0000000000000000000000000000"
	ftRootHash = "roothash"
)

// ftHarness feeds an FSM real raft.Logs built with EncodeBatch.
type ftHarness struct {
	t       testing.TB
	f       *FSM
	store   audit.Store
	index   uint64
	now     int64
	emitted []apitypes.AuditEntry // what onAudit received
}

func newFtHarness(t testing.TB) *ftHarness {
	h := &ftHarness{t: t, store: audit.NewMemoryStore(), now: ftT0}
	h.f = New(h.store, func(es []apitypes.AuditEntry) { h.emitted = append(h.emitted, es...) }, hclog.NewNullLogger())
	return h
}

// logOf encodes cmds as the next log entry (index+1, time+1s) without
// applying it.
func (h *ftHarness) logOf(cmds ...Envelope) *raft.Log {
	h.t.Helper()
	data, err := EncodeBatch(&Batch{Time: h.now + int64(time.Second), Cmds: cmds})
	if err != nil {
		h.t.Fatal(err)
	}
	return &raft.Log{Index: h.index + 1, Term: 1, Type: raft.LogCommand, Data: data}
}

// apply commits cmds as one log entry and returns one result per command.
func (h *ftHarness) apply(cmds ...Envelope) []Result {
	h.t.Helper()
	l := h.logOf(cmds...)
	h.index++
	h.now += int64(time.Second)
	out := h.f.Apply(l)
	res, ok := out.([]Result)
	if !ok || len(res) != len(cmds) {
		h.t.Fatalf("Apply returned %T %v for %d commands", out, out, len(cmds))
	}
	for i, r := range res {
		if r.Index != l.Index {
			h.t.Fatalf("result %d has index %d, want %d", i, r.Index, l.Index)
		}
	}
	if h.f.State().Index != l.Index {
		h.t.Fatalf("state index %d after applying %d", h.f.State().Index, l.Index)
	}
	return res
}

// one applies a single command and returns its result.
func (h *ftHarness) one(env Envelope) Result {
	h.t.Helper()
	return h.apply(env)[0]
}

func ftEnv(t testing.TB, typ CmdType, body any, caller string, entries ...apitypes.AuditEntry) Envelope {
	t.Helper()
	env, err := NewEnvelope(typ, body, caller, entries)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func ftEntry(action, path string) apitypes.AuditEntry {
	return apitypes.AuditEntry{
		Node: "n1", RequestID: "req-" + action + path, Action: action,
		Principal: apitypes.Principal{Accessor: ftRootAcc, Name: "root"}, SourceIP: "10.1.2.3", Path: path,
	}
}

func ftSealed(size int) *SealedValue {
	return &SealedValue{Ciphertext: []byte("ciphertext-" + string(rune('a'+size%26))), WrappedDEK: []byte("wrapped-dek"), Size: size, KMSKey: "default", KMSKeyVersion: 1}
}

// boot applies InitCluster and InitRoot.
func (h *ftHarness) boot() {
	h.t.Helper()
	if r := h.one(ftEnv(h.t, CmdInitCluster, &InitCluster{ClusterID: "cluster-1", DefaultKey: []byte("wrapped-default-key"), RootFingerprint: "fp-1"}, "")); r.Err != nil {
		h.t.Fatalf("InitCluster: %v", r.Err)
	}
	if r := h.one(ftEnv(h.t, CmdInitRoot, &InitRoot{Accessor: ftRootAcc, Hash: ftRootHash}, "", ftEntry("sys.init", ""))); r.Err != nil {
		h.t.Fatalf("InitRoot: %v", r.Err)
	}
}

func ftWantCode(t testing.TB, what string, r Result, code errs.Code) {
	t.Helper()
	if code == "" {
		if r.Err != nil {
			t.Fatalf("%s: unexpected error %v", what, r.Err)
		}
		return
	}
	if r.Err == nil || r.Err.Code != code || r.Err.Message == "" {
		t.Fatalf("%s: got %v, want %s", what, r.Err, code)
	}
}

// ftStoreEntries returns every entry in the store, in seq order.
func ftStoreEntries(t testing.TB, s audit.Store) []apitypes.AuditEntry {
	t.Helper()
	var out []apitypes.AuditEntry
	token := ""
	for {
		es, next, err := s.Query(audit.Query{Limit: audit.MaxQueryLimit, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, es...)
		if next == "" {
			return out
		}
		token = next
	}
}

// ftCanon encodes v as msgpack with sorted map keys, so equal values encode
// equally whatever their maps' iteration order or nil-vs-empty collections.
func ftCanon(t testing.TB, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func ftTree[T any](t testing.TB, tr *iradix.Tree[T]) map[string]string {
	t.Helper()
	m := map[string]string{}
	tr.Root().Walk(func(k []byte, v T) bool {
		m[string(k)] = ftCanon(t, v)
		return false
	})
	return m
}

func ftSecrets(t testing.TB, tr *SecretTree) map[string]string {
	t.Helper()
	m := map[string]string{}
	tr.Ascend("", func(s *Secret) bool {
		m[s.Path] = ftCanon(t, s)
		return true
	})
	return m
}

// ftSameState compares two states field by field (the trees by content).
func ftSameState(t testing.TB, a, b *State) {
	t.Helper()
	if a.Index != b.Index || a.ClusterID != b.ClusterID || a.RootFingerprint != b.RootFingerprint ||
		a.Initialized != b.Initialized || a.AuditHead != b.AuditHead || a.VersionCount != b.VersionCount {
		t.Fatalf("scalar fields differ:\n%+v\n%+v", *a, *b)
	}
	for _, c := range []struct {
		name string
		x, y map[string]string
	}{
		{"secrets", ftSecrets(t, a.Secrets), ftSecrets(t, b.Secrets)},
		{"keys", ftTree(t, a.Keys), ftTree(t, b.Keys)},
		{"tokens", ftTree(t, a.Tokens), ftTree(t, b.Tokens)},
		{"token hashes", ftTree(t, a.TokenHashes), ftTree(t, b.TokenHashes)},
		{"policies", ftTree(t, a.Policies), ftTree(t, b.Policies)},
	} {
		if !reflect.DeepEqual(c.x, c.y) {
			t.Fatalf("%s differ:\n%q\n%q", c.name, c.x, c.y)
		}
	}
}
