package fsm

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestMemoryPerSecret reports the live heap per stored secret (one 256-byte
// version each); COFFER_MEM_SECRETS sets how many (default: skipped).
func TestMemoryPerSecret(t *testing.T) {
	n := 0
	fmt.Sscan(os.Getenv("COFFER_MEM_SECRETS"), &n)
	if n == 0 {
		t.Skip("set COFFER_MEM_SECRETS to measure")
	}
	h := newFtHarness(t)
	h.f = New(discardStore{}, nil, h.f.logger)
	h.boot()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const per = 500
	for i := 0; i < n; i += per {
		cmds := make([]Envelope, per)
		for j := range cmds {
			p := fmt.Sprintf("/bench/big/k%07d", i+j)
			sv := &SealedValue{Ciphertext: make([]byte, 284), WrappedDEK: make([]byte, 60), Size: 256, KMSKey: "default", KMSKeyVersion: 1}
			cmds[j] = ftEnv(t, CmdCreateSecret, &CreateSecret{Path: p, UID: fmt.Sprintf("%032x", i+j), KMSKey: "default", Value: sv, CreatedBy: "0123456789abcdef0123456789abcdef"}, ftRootAcc,
				ftEntry("secrets.create", p), ftEntry("secrets.put_value", p), ftEntry("kms.encrypt", p))
		}
		data, err := EncodeBatch(&Batch{Time: time.Now().UnixNano(), Cmds: cmds})
		if err != nil {
			t.Fatal(err)
		}
		h.index++
		h.f.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: data})
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if f := os.Getenv("COFFER_MEM_PROFILE"); f != "" {
		out, _ := os.Create(f)
		pprof.WriteHeapProfile(out)
		out.Close()
	}
	t.Logf("%d secrets: live heap %.0f MiB, %.0f bytes per secret", h.f.State().Secrets.Len(),
		float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), float64(after.HeapAlloc-before.HeapAlloc)/float64(n))
	start := time.Now()
	if err := WriteState(io.Discard, h.f.State()); err != nil {
		t.Fatal(err)
	}
	t.Logf("WriteState of that state: %v", time.Since(start).Round(time.Millisecond))
}
