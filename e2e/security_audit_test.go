package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// TestSecurityAuditFileVerify replays finding 8 of issue 14 against real
// processes: an --audit-file export altered with every later hash
// recomputed, or with a duplicated key in one line, passed the documented
// verification. `coffer audit verify --file F --addr A` must refuse both,
// naming the seq, and pass the untouched file.
func TestSecurityAuditFileVerify(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	for i := range 4 {
		p := fmt.Sprintf("/app/prod/svc%d/db", i)
		mustPost(t, n.url, c.token, "createSecret", map[string]any{"path": p, "value": "c2VjcmV0"}, nil)
		mustPost(t, n.url, c.token, "getSecretValue", map[string]any{"path": p}, nil)
	}
	var q apitypes.QueryAuditResponse
	mustPost(t, n.url, c.token, "queryAudit", map[string]any{"limit": 1000}, &q)
	if len(q.Entries) < 10 {
		t.Fatalf("only %d audit entries", len(q.Entries))
	}
	head := q.Entries[len(q.Entries)-1].Seq
	// The node writes its file as it applies entries: wait until it holds
	// the entries seen above, then take a copy (the export).
	var export []byte
	if !waitFor(startTimeout, func() bool {
		b, err := os.ReadFile(n.auditFile)
		if err != nil {
			return false
		}
		es := parseAuditLines(t, b)
		export = b
		return len(es) > 0 && es[len(es)-1].Seq >= head
	}) {
		t.Fatalf("%s does not reach seq %d within %v", n.auditFile, head, startTimeout)
	}
	// Cut at the last newline: the node may be writing the next line.
	export = export[:bytes.LastIndexByte(export, '\n')+1]
	entries := parseAuditLines(t, export)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	verify := func(file string, extra ...string) cliResult {
		return c.cli(t, n, "", nil, append([]string{"audit", "verify", "--file", file, "--addr", n.url}, extra...)...)
	}

	// The entry to alter: a read of a secret, somewhere in the middle.
	victim := -1
	for i, e := range entries {
		if e.Action == "secrets.get_value" && i > 2 && i < len(entries)-2 {
			victim = i
			break
		}
	}
	if victim < 0 {
		t.Fatalf("no secrets.get_value entry in the middle of the export (%d entries)", len(entries))
	}
	seq := entries[victim].Seq

	t.Run("untouched export passes", func(t *testing.T) {
		r := verify(write("good.jsonl", export))
		if r.code != 0 || !strings.Contains(string(r.stdout), "is the cluster's") {
			t.Errorf("untouched export: want exit 0 anchored to the cluster: %s", r)
		}
	})

	t.Run("recomputed chain is caught and the seq named", func(t *testing.T) {
		forged := append([]apitypes.AuditEntry(nil), entries...)
		forged[victim].Path = "/app/prod/innocent"
		prev := forged[victim-1].Hash
		for i := victim; i < len(forged); i++ {
			forged[i].PrevHash = prev
			forged[i].Hash = e2eAuditHash(&forged[i])
			prev = forged[i].Hash
		}
		var b []byte
		for i := range forged {
			line, err := json.Marshal(&forged[i])
			if err != nil {
				t.Fatal(err)
			}
			b = append(append(b, line...), '\n')
		}
		file := write("forged.jsonl", b)
		// Offline, the forged file is one unbroken chain: that is the gap.
		if r := c.cli(t, n, "", nil, "audit", "verify", "--file", file, "--offline"); r.code != 0 || !strings.Contains(string(r.stdout), "NOT ANCHORED") {
			t.Errorf("forged export offline: want exit 0 and NOT ANCHORED (the test's hashes must match Coffer's): %s", r)
		}
		r := verify(file)
		want := fmt.Sprintf("entry %d is not the cluster's (it differs in: path, hash)", seq)
		if r.code != 1 || !strings.Contains(string(r.stdout), want) {
			t.Errorf("forged export: want exit 1 and %q: %s", want, r)
		}
		r = verify(file, "--json")
		var res struct {
			OK             bool   `json:"ok"`
			FirstBrokenSeq uint64 `json:"first_broken_seq"`
			Anchored       bool   `json:"anchored"`
		}
		if err := json.Unmarshal(r.stdout, &res); r.code != 1 || err != nil || res.OK || res.FirstBrokenSeq != seq || !res.Anchored {
			t.Errorf("forged export --json: want exit 1, first_broken_seq %d: %s (%v)", seq, r, err)
		}
	})

	t.Run("duplicate key is refused", func(t *testing.T) {
		lines := strings.SplitAfter(string(export), "\n")
		l := lines[victim]
		// Encoding/json (and Python) take the last "path", others the
		// first: the line shows readers different paths.
		dup := strings.Replace(l, `"path":`, `"path":"/app/prod/innocent","path":`, 1)
		if dup == l {
			t.Fatalf("line %d has no path: %s", victim+1, l)
		}
		lines[victim] = dup
		r := verify(write("dup.jsonl", []byte(strings.Join(lines, ""))))
		want := fmt.Sprintf(`line %d: duplicate key "path"`, victim+1)
		if r.code != 1 || !strings.Contains(string(r.stdout), want) {
			t.Errorf("duplicate key: want exit 1 and %q: %s", want, r)
		}
		r = verify(write("dup.jsonl", []byte(strings.Join(lines, ""))), "--json")
		var res struct {
			OK             bool   `json:"ok"`
			FirstBrokenSeq uint64 `json:"first_broken_seq"`
		}
		if err := json.Unmarshal(r.stdout, &res); r.code != 1 || err != nil || res.OK || res.FirstBrokenSeq != seq {
			t.Errorf("duplicate key --json: want exit 1, first_broken_seq %d: %s (%v)", seq, r, err)
		}
	})

	t.Run("entries the cluster never had are refused", func(t *testing.T) {
		// A file that goes on past the cluster's trail: chained correctly,
		// but the cluster holds no entry at its last seq.
		last := entries[len(entries)-1]
		extra := last
		extra.Seq, extra.PrevHash, extra.Time = last.Seq+1000, last.Hash, last.Time.Add(time.Second)
		var b []byte
		for i := last.Seq + 1; i <= extra.Seq; i++ {
			e := extra
			e.Seq = i
			e.Hash = e2eAuditHash(&e)
			line, _ := json.Marshal(&e)
			b = append(append(b, line...), '\n')
			extra.PrevHash = e.Hash
		}
		r := verify(write("long.jsonl", append(append([]byte(nil), export...), b...)))
		if r.code != 1 || !strings.Contains(string(r.stdout), fmt.Sprintf("holds no entry with seq %d", last.Seq+1000)) {
			t.Errorf("export with invented entries: want exit 1, the node holds no such seq: %s", r)
		}
	})
}

// parseAuditLines decodes the complete lines of an audit file (leniently:
// only to pick entries; the CLI under test does the strict parsing).
func parseAuditLines(t testing.TB, b []byte) []apitypes.AuditEntry {
	var out []apitypes.AuditEntry
	for _, l := range bytes.Split(b, []byte("\n")) {
		var e apitypes.AuditEntry
		if len(l) == 0 || json.Unmarshal(l, &e) != nil || e.Seq == 0 {
			continue
		}
		out = append(out, e)
	}
	return out
}

// e2eAuditHash is an entry's hash as docs/AUDIT.md "The hash chain" defines
// it, written from the documentation rather than imported, so the test also
// checks that the documented encoding is the real one.
func e2eAuditHash(e *apitypes.AuditEntry) string {
	var b []byte
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	str("coffer.audit.v1")
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	str(e.Time.UTC().Format(time.RFC3339Nano))
	for _, s := range []string{e.Node, e.RequestID, e.Action, e.Principal.Accessor, e.Principal.Name, e.SourceIP, e.Path} {
		str(s)
	}
	b = binary.BigEndian.AppendUint64(b, e.Version)
	str(e.KMSKey)
	b = binary.BigEndian.AppendUint32(b, e.KMSKeyVersion)
	for _, s := range []string{e.Result, e.ErrorCode, e.Reason, e.PrevHash} {
		str(s)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
