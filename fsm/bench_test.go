package fsm

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// BenchmarkApplyPutBatch64 applies log entries of 64 putSecretValue
// commands (each with its two audit entries), as group commit makes them.
// discardStore keeps nothing, so the benchmarks time Apply alone.
type discardStore struct{ audit.Store }

func (discardStore) Append([]apitypes.AuditEntry) error { return nil }
func (discardStore) TruncateAfter(uint64) error         { return nil }

func benchHarness(b *testing.B) *ftHarness {
	h := newFtHarness(b)
	h.f = New(discardStore{audit.NewMemoryStore()}, nil, hclog.NewNullLogger())
	return h
}

func BenchmarkApplyPutBatch64(b *testing.B) {
	h := benchHarness(b)
	h.boot()
	for i := 0; i < 64; i++ {
		p := fmt.Sprintf("/bench/k%02d", i)
		h.one(ftEnv(b, CmdCreateSecret, &CreateSecret{Path: p, UID: "uid-" + p, KMSKey: "default", CreatedBy: ftRootAcc}, ftRootAcc))
	}
	sv := SealedValue{Ciphertext: make([]byte, 284), WrappedDEK: make([]byte, 60), Size: 256, KMSKey: "default", KMSKeyVersion: 1}
	cmds := make([]Envelope, 64)
	for i := range cmds {
		p := fmt.Sprintf("/bench/k%02d", i)
		env := ftEnv(b, CmdPutValue, &PutValue{Path: p, UID: "uid-" + p, Value: sv, Origin: "put", CreatedBy: ftRootAcc}, ftRootAcc,
			ftEntry("secrets.put_value", p), ftEntry("kms.encrypt", p))
		env.Action, env.Path, env.Source = "putSecretValue", p, "10.1.2.3"
		cmds[i] = env
	}
	benchApply(b, h, cmds, "ns/command")
}

// BenchmarkApplyReadAudit256 applies entries of 256 read-audit commands.
func BenchmarkApplyReadAudit256(b *testing.B) {
	h := benchHarness(b)
	h.boot()
	benchApply(b, h, readAuditCmds(b, 256), "ns/read")
}

// BenchmarkDecodeBatchReadAudit256 decodes an entry of 256 read-audit
// commands, the part of their apply that every node repeats.
func BenchmarkDecodeBatchReadAudit256(b *testing.B) {
	data, err := EncodeBatch(&Batch{Time: time.Now().UnixNano(), Cmds: readAuditCmds(b, 256)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBatch(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*256), "ns/read")
}

// readAuditCmds are the audit-only commands of n stale reads of one secret
// by one token, as a follower sends them: each with its own request id,
// shared by its two entries.
func readAuditCmds(b *testing.B, n int) []Envelope {
	cmds := make([]Envelope, n)
	for i := range cmds {
		e := ftEntry("secrets.get_value", "/bench/k")
		e.RequestID = fmt.Sprintf("%032x", i)
		e.Version, e.KMSKey, e.KMSKeyVersion, e.Result = 1, "default", 1, apitypes.ResultOK
		d := e
		d.Action = "kms.decrypt"
		cmds[i] = ftEnv(b, CmdAuditOnly, &AuditOnly{}, "", e, d)
	}
	return cmds
}

// benchApply applies one log entry holding cmds b.N times and reports the
// time per command under unit.
func benchApply(b *testing.B, h *ftHarness, cmds []Envelope, unit string) {
	data, err := EncodeBatch(&Batch{Time: time.Now().UnixNano(), Cmds: cmds})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.f.Apply(&raft.Log{Index: h.index + 1 + uint64(i), Type: raft.LogCommand, Data: data})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(cmds)), unit)
}

// benchState is a state of n secrets with one 256-byte version each, as
// the suite's bulk load makes them.
func benchState(b *testing.B, n int) *State {
	st := emptyState()
	for i := range n {
		p := fmt.Sprintf("/bench/big/k%07d", i)
		st.Secrets.insert(&Secret{Path: p, UID: fmt.Sprintf("%032x", i), KMSKey: "default", CreatedAt: 1, CreatedBy: "0123456789abcdef0123456789abcdef", UpdatedAt: 1,
			Versions: []*Version{{Version: 1, CreatedAt: 1, CreatedBy: "0123456789abcdef0123456789abcdef", Origin: "put", Size: 256, KMSKey: "default", KMSKeyVersion: 1,
				Ciphertext: make([]byte, 284), WrappedDEK: make([]byte, 60)}}})
	}
	return st
}

// BenchmarkSnapshotRead decodes a snapshot of 100,000 secrets, the work of
// a node restoring one at startup.
func BenchmarkSnapshotRead(b *testing.B) {
	var buf bytes.Buffer
	if err := WriteState(&buf, benchState(b, 100_000)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ResetTimer()
	for range b.N {
		if _, err := ReadState(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/secret")
}

// BenchmarkSnapshotWrite encodes a state of 100,000 secrets.
func BenchmarkSnapshotWrite(b *testing.B) {
	st := benchState(b, 100_000)
	b.ResetTimer()
	for range b.N {
		if err := WriteState(io.Discard, st); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/secret")
}
