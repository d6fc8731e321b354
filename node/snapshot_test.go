package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/cofferhq/coffer/kms"
	"github.com/vmihailenco/msgpack/v5"
)

func testRootKeys(t *testing.T, n int) (*kms.RootKeys, []string) {
	t.Helper()
	var lines []string
	for range n {
		l, err := kms.GenerateRootKey()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(l))
	}
	return mustRootKeys(t, lines...), lines
}

func mustRootKeys(t *testing.T, lines ...string) *kms.RootKeys {
	t.Helper()
	r, err := kms.ParseRootKeys([]byte(strings.Join(lines, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func snapshotOf(t *testing.T, n *Node) []byte {
	t.Helper()
	var buf bytes.Buffer
	info, err := n.WriteSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != buf.Len() || info.Format != snapshotFormat || info.MACKey != n.keys.Root().Fingerprint() {
		t.Fatalf("info %+v for %d bytes", info, buf.Len())
	}
	return buf.Bytes()
}

func wantCode(t *testing.T, what string, err error, code errs.Code, contains string) {
	t.Helper()
	if errs.CodeOf(err) != code || !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: %v, want %s containing %q", what, err, code, contains)
	}
}

// A snapshot's MAC verifies under the root key that wrote it; a change of
// any byte of the file, or another root key, is refused before anything
// else of the file is read.
func TestSnapshotMACRefusesAnyChange(t *testing.T) {
	n := startDevNode(t)
	data := snapshotOf(t, n)
	info, state, err := VerifySnapshot(data, n.keys.Root())
	if err != nil || !info.MACVerified || info.MACKey != n.keys.Root().Fingerprint() || len(state) == 0 {
		t.Fatalf("VerifySnapshot: %+v %v", info, err)
	}
	if _, _, err := n.CheckRestore(data); err != nil {
		t.Fatalf("CheckRestore of an untouched file: %v", err)
	}
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x01
		if _, _, err := VerifySnapshot(bad, n.keys.Root()); err == nil {
			t.Fatalf("a flipped bit at byte %d of %d went unnoticed", i, len(data))
		}
		if i%97 == 0 || i >= len(data)-snapshotTrailerSize {
			_, _, err := n.CheckRestore(bad)
			wantCode(t, "CheckRestore of a changed file", err, errs.InvalidArgument, "")
		}
	}
	for _, cut := range []int{1, sha256.Size, snapshotTrailerSize, len(data) / 2, len(data) - 1} {
		_, _, err := n.CheckRestore(data[:len(data)-cut])
		wantCode(t, "truncated file", err, errs.InvalidArgument, "")
	}
	// The attack: change the state, recompute the SHA-256 in the trailer.
	bad := bytes.Clone(data)
	i := bytes.Index(bad, []byte("default"))
	bad[i] = 'D'
	body := bad[:len(bad)-snapshotTrailerSize]
	sum := sha256.Sum256(body)
	copy(bad[len(body):], sum[:])
	_, _, err = n.CheckRestore(bad)
	wantCode(t, "recomputed checksum", err, errs.InvalidArgument, "MAC does not verify")

	other, _ := testRootKeys(t, 1)
	_, _, err = VerifySnapshot(data, other)
	if err == nil || !strings.Contains(err.Error(), "MAC does not verify") || !strings.Contains(err.Error(), other.Fingerprint()) {
		t.Fatalf("another root key: %v", err)
	}
}

// After a root key rotation the file holds several keys: snapshots are
// written with the newest, and a snapshot written with an older one still
// verifies while that key is in the file.
func TestSnapshotMACRootKeyRotation(t *testing.T) {
	n := startDevNode(t)
	st := n.fsm.State()
	_, lines := testRootKeys(t, 2)
	oldOnly, both, newOnly := mustRootKeys(t, lines[0]), mustRootKeys(t, lines...), mustRootKeys(t, lines[1])
	var byOld, byBoth bytes.Buffer
	if _, err := writeSnapshot(&byOld, st, SnapshotInfo{ClusterID: st.ClusterID}, oldOnly); err != nil {
		t.Fatal(err)
	}
	info, err := writeSnapshot(&byBoth, st, SnapshotInfo{ClusterID: st.ClusterID}, both)
	if err != nil || info.MACKey != newOnly.Fingerprint() {
		t.Fatalf("written with %q (%v), want the newest %q", info.MACKey, err, newOnly.Fingerprint())
	}
	for _, c := range []struct {
		name string
		data []byte
		root *kms.RootKeys
		ok   bool
		fp   string
	}{
		{"old file, both keys", byOld.Bytes(), both, true, oldOnly.Fingerprint()},
		{"old file, old key", byOld.Bytes(), oldOnly, true, oldOnly.Fingerprint()},
		{"old file, new key only", byOld.Bytes(), newOnly, false, ""},
		{"new file, both keys", byBoth.Bytes(), both, true, newOnly.Fingerprint()},
		{"new file, new key", byBoth.Bytes(), newOnly, true, newOnly.Fingerprint()},
		{"new file, old key only", byBoth.Bytes(), oldOnly, false, ""},
	} {
		info, _, err := VerifySnapshot(c.data, c.root)
		if (err == nil) != c.ok || c.ok && (info.MACKey != c.fp || !info.MACVerified) {
			t.Errorf("%s: %+v %v", c.name, info, err)
		}
	}
}

// Files of format 1 (a SHA-256 trailer anyone can recompute) are refused
// by restore; they still parse for inspection.
func TestSnapshotFormat1Refused(t *testing.T) {
	n := startDevNode(t)
	var state bytes.Buffer
	if err := fsm.WriteState(&state, n.fsm.State()); err != nil {
		t.Fatal(err)
	}
	hdr, err := msgpack.Marshal(&SnapshotInfo{ClusterID: n.fsm.State().ClusterID})
	if err != nil {
		t.Fatal(err)
	}
	var f bytes.Buffer
	f.WriteString(snapshotFileMagicV1)
	binary.Write(&f, binary.BigEndian, uint32(len(hdr)))
	f.Write(hdr)
	f.Write(state.Bytes())
	sum := sha256.Sum256(f.Bytes())
	f.Write(sum[:])
	_, _, err = n.CheckRestore(f.Bytes())
	wantCode(t, "format 1", err, errs.InvalidArgument, "format 1")
	info, _, err := ParseSnapshot(f.Bytes())
	if err != nil || info.Format != 1 || info.MACVerified {
		t.Fatalf("ParseSnapshot of format 1: %+v %v", info, err)
	}
}

// A file with a valid MAC whose state breaks an invariant (as a bug or a
// holder of the root key could make) is still refused, InvalidArgument.
func TestCheckRestoreValidatesState(t *testing.T) {
	n := startDevNode(t)
	st := *n.fsm.State()
	planted := &fsm.Token{Accessor: strings.Repeat("ab", 16), Hash: "h1", Name: "planted", Policies: []string{"admin"}}
	st.Tokens, _, _ = st.Tokens.Insert([]byte(planted.Accessor), planted)
	st.TokenHashes, _, _ = st.TokenHashes.Insert([]byte(planted.Hash), planted.Accessor)
	var buf bytes.Buffer
	if _, err := writeSnapshot(&buf, &st, SnapshotInfo{ClusterID: st.ClusterID}, n.keys.Root()); err != nil {
		t.Fatal(err)
	}
	_, _, err := n.CheckRestore(buf.Bytes())
	wantCode(t, "planted token with a chosen hash", err, errs.InvalidArgument, "hash")
}
