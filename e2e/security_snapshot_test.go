package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/vmihailenco/msgpack/v5"
)

// TestSecuritySnapshotTampered replays finding 5 of issue 14 (SPEC §6,
// "Holder of a backup file"): a snapshot file rewritten by someone without
// the root key, its SHA-256 recomputed so the old check passes. Each
// variant (a secret version set to nil, a planted admin token with a hash
// the attacker chose, a key's wrapped material corrupted) must be refused
// with InvalidArgument; the cluster keeps its state (the secret reads, the
// planted token doesn't work) and a following putSecretValue works on every
// node. On 7fef798 the nil version restored with 200 and the next put
// panicked on all three nodes; the planted token worked as admin.
func TestSecuritySnapshotTampered(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitVoters(clusterFormTimeout)
	const path = "/e2e/snap/db"
	var cr apitypes.CreateSecretResponse
	mustPost(t, leader.url, c.token, "createSecret", apitypes.CreateSecretRequest{Path: path, Value: []byte("original")}, &cr)
	var pv apitypes.PutSecretValueResponse
	mustPost(t, leader.url, c.token, "putSecretValue", apitypes.PutSecretValueRequest{Path: path, Value: []byte("second")}, &pv)
	file := filepath.Join(t.TempDir(), "good.snap")
	c.mustCLI(t, leader, nil, "snapshot", "save", file)
	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	// inspect works offline: without the root key it says the MAC was not
	// checked; with it, it checks the MAC.
	if r := runCLI(t, cliEnv("", ""), nil, "snapshot", "inspect", file); r.code != 0 || !strings.Contains(string(r.stdout), "MAC:") || !strings.Contains(string(r.stdout), "not checked") {
		t.Errorf("snapshot inspect without the root key: %s", r)
	}
	if r := runCLI(t, cliEnv("", ""), nil, "snapshot", "inspect", "--root-key-file", c.keyFile, file); r.code != 0 || !strings.Contains(string(r.stdout), "verified with root key") {
		t.Errorf("snapshot inspect --root-key-file: %s", r)
	}

	planted := "cfr_" + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0x5a}, 32))
	plantedSum := sha256.Sum256([]byte(planted))
	want := "second"
	for _, v := range []struct {
		name   string
		tamper func(t *testing.T, hdr map[string]any, recs []snapRecord) []snapRecord
	}{
		{"secret version set to nil", func(t *testing.T, _ map[string]any, recs []snapRecord) []snapRecord {
			for _, r := range recs {
				if r.typ == 'S' && r.body["p"] == path {
					vs := r.body["vs"].([]any)
					vs[len(vs)-1] = nil
					return recs
				}
			}
			t.Fatal("no secret record")
			return nil
		}},
		{"planted admin token", func(t *testing.T, hdr map[string]any, recs []snapRecord) []snapRecord {
			hdr["nt"] = toInt(hdr["nt"]) + 1
			return append(recs, snapRecord{typ: 'T', body: map[string]any{
				"a": hex.EncodeToString(bytes.Repeat([]byte{0xab}, 16)), "h": hex.EncodeToString(plantedSum[:]),
				"n": "planted", "p": []any{"admin"}, "ca": int64(1),
			}})
		}},
		{"key material corrupted", func(t *testing.T, _ map[string]any, recs []snapRecord) []snapRecord {
			for _, r := range recs {
				if r.typ == 'K' {
					kv := r.body["vs"].([]any)[0].(map[string]any)
					w := bytes.Clone(kv["w"].([]byte))
					w[len(w)/2] ^= 0xff
					kv["w"] = w
					return recs
				}
			}
			t.Fatal("no key record")
			return nil
		}},
	} {
		t.Run(v.name, func(t *testing.T) {
			bad := tamperSnapshot(t, good, v.tamper)
			badFile := filepath.Join(t.TempDir(), "bad.snap")
			if err := os.WriteFile(badFile, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			if r := runCLI(t, cliEnv("", ""), nil, "snapshot", "inspect", "--root-key-file", c.keyFile, badFile); r.code != 1 || !strings.Contains(string(r.stderr), "MAC does not verify") {
				t.Errorf("snapshot inspect --root-key-file of the tampered file: %s", r)
			}
			r, err := postRaw(c.nodes[1].url, c.token, "sys/restore", bad)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusBadRequest || r.errorCode() != "InvalidArgument" {
				t.Fatalf("restore of a tampered snapshot (%s): %s, want 400 InvalidArgument", v.name, r)
			}
			// Nothing changed: the planted token doesn't work, the secret
			// reads on every node, and takes a new version on every node.
			if r := post(t, leader.url, planted, "whoami", map[string]any{}, nil); r.status != http.StatusUnauthorized {
				t.Fatalf("the planted token: %s, want 401", r)
			}
			for _, s := range c.nodes {
				var gv apitypes.GetSecretValueResponse
				mustPost(t, s.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{Consistency: "leader"}}, &gv)
				if string(gv.Value) != want {
					t.Fatalf("%s reads %q after the refused restore, want %q", s.name, gv.Value, want)
				}
			}
			for _, s := range c.nodes {
				want = v.name + " " + s.name
				var pv apitypes.PutSecretValueResponse
				mustPost(t, s.url, c.token, "putSecretValue", apitypes.PutSecretValueRequest{Path: path, Value: []byte(want)}, &pv)
				var gv apitypes.GetSecretValueResponse
				mustPost(t, s.url, c.token, "getSecretValue", apitypes.GetSecretValueRequest{Path: path, ReadOptions: apitypes.ReadOptions{MinIndex: pv.Index}}, &gv)
				if string(gv.Value) != want {
					t.Fatalf("%s after its put: %q", s.name, gv.Value)
				}
			}
		})
	}
	// The untouched file still restores.
	if r, err := postRaw(c.nodes[2].url, c.token, "sys/restore", good); err != nil || r.status != http.StatusOK {
		t.Fatalf("restore of the untouched snapshot: %v %v", r, err)
	}
}

type snapRecord struct {
	typ  uint8
	body map[string]any
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case int64:
		return n
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return int64(n)
	}
	return 0
}

// tamperSnapshot rewrites a snapshot file as an attacker without the root
// key would: it decodes the state stream by hand (the format is msgpack:
// a magic line, a header map, records of a type byte and a map), lets
// tamper change it, and writes the file back with its SHA-256 recomputed
// where the file keeps it (the last 32 bytes in format 1; the 32 before
// the MAC in format 2, whose MAC it can't recompute and leaves as it was).
func tamperSnapshot(t *testing.T, file []byte, tamper func(*testing.T, map[string]any, []snapRecord) []snapRecord) []byte {
	t.Helper()
	nl := bytes.IndexByte(file, '\n')
	if nl < 0 || !bytes.HasPrefix(file, []byte("COFFER-SNAPSHOT v")) {
		t.Fatalf("not a snapshot file: %q", file[:min(len(file), 20)])
	}
	trailer := 32
	if string(file[:nl+1]) != "COFFER-SNAPSHOT v1\n" {
		trailer = 64
	}
	hl := int(binary.BigEndian.Uint32(file[nl+1:]))
	head := file[:nl+1+4+hl]
	stream := file[len(head) : len(file)-trailer]
	const stateMagic = "COFFER-STATE\n"
	if !bytes.HasPrefix(stream, []byte(stateMagic)) {
		t.Fatal("no state stream")
	}
	dec := msgpack.NewDecoder(bytes.NewReader(stream[len(stateMagic):]))
	var hdr map[string]any
	if err := dec.Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	var recs []snapRecord
	for {
		typ, err := dec.DecodeUint8()
		if err != nil {
			t.Fatal(err)
		}
		if typ == 'E' {
			break
		}
		var body map[string]any
		if err := dec.Decode(&body); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, snapRecord{typ, body})
	}
	recs = tamper(t, hdr, recs)
	var out bytes.Buffer
	out.Write(head)
	out.WriteString(stateMagic)
	enc := msgpack.NewEncoder(&out)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(hdr); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := enc.EncodeUint8(r.typ); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(r.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.EncodeUint8('E'); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(out.Bytes())
	out.Write(sum[:])
	if trailer == 64 {
		out.Write(file[len(file)-32:])
	}
	return out.Bytes()
}
