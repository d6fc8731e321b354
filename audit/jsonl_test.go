package audit

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// jsonLines renders entries as FileSink writes them.
func jsonLines(entries []Entry) []byte {
	var b []byte
	for i := range entries {
		b = entries[i].AppendJSON(b)
		b = append(b, '\n')
	}
	return b
}

func verifyBytes(t *testing.T, b []byte) FileReport {
	t.Helper()
	r, err := VerifyJSONL(bytes.NewReader(b), FileOptions{CheckpointEvery: 10})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// replaceLine returns b with its n-th line (1-based) replaced by f(line).
func replaceLine(b []byte, n int, f func(string) string) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	lines[n-1] = f(strings.TrimSuffix(lines[n-1], "\n")) + "\n"
	return []byte(strings.Join(lines, ""))
}

func TestVerifyJSONLValid(t *testing.T) {
	entries, head := chain(Head{}, 35)
	var seen []uint64
	r, err := VerifyJSONL(bytes.NewReader(jsonLines(entries)), FileOptions{CheckpointEvery: 10, OnEntry: func(e *Entry) { seen = append(seen, e.Seq) }})
	if err != nil || !r.OK || r.Entries != 35 || r.First != 1 || r.Last != 35 || r.LastHash != head.Hash || !r.Genesis || r.FirstBroken != 0 {
		t.Fatalf("valid export: %+v, %v", r, err)
	}
	if len(r.Checkpoints) != 3 || r.Checkpoints[2] != (Head{Seq: 30, Hash: entries[29].Hash}) || len(seen) != 35 {
		t.Fatalf("checkpoints %+v, %d entries seen", r.Checkpoints, len(seen))
	}
	// A file that starts later (a node that joined later) is anchored by
	// its first prev_hash.
	if r := verifyBytes(t, jsonLines(entries[10:])); !r.OK || r.Genesis || r.First != 11 || r.Entries != 25 {
		t.Fatalf("suffix: %+v", r)
	}
	if r := verifyBytes(t, nil); !r.OK || r.Entries != 0 {
		t.Fatalf("empty: %+v", r)
	}
	// Every line parses back to the entry it was written from.
	for i := range entries {
		e, err := ParseLine(entries[i].AppendJSON(nil))
		if err != nil || e != entries[i] {
			t.Fatalf("line %d: %v\n%+v\n%+v", i+1, err, e, entries[i])
		}
	}
}

func TestVerifyJSONLRecomputedChainNeedsAnchor(t *testing.T) {
	entries, _ := chain(Head{}, 30)
	forged := recomputeFrom(entries, 12, func(e *Entry) { e.Path = "/app/prod/other" })
	r := verifyBytes(t, jsonLines(forged))
	// Offline, a recomputed chain is one unbroken chain: that is why the
	// CLI compares the last hash with the cluster's.
	if !r.OK || r.LastHash == entries[29].Hash {
		t.Fatalf("recomputed chain offline: %+v", r)
	}
	points := append(r.Checkpoints, Head{Seq: r.Last, Hash: r.LastHash})
	i, err := FirstMismatch(points, func(seq uint64) (string, error) { return entries[seq-1].Hash, nil })
	if err != nil || points[i].Seq != 20 {
		t.Fatalf("FirstMismatch: %d %v, want the checkpoint at 20", i, err)
	}
}

func TestVerifyJSONLRefuses(t *testing.T) {
	entries, _ := chain(Head{}, 8)
	good := jsonLines(entries)
	l5 := func(f func(string) string) []byte { return replaceLine(good, 5, f) }
	cases := []struct {
		name   string
		file   []byte
		broken uint64
		line   int
		reason string
	}{
		{"duplicate key", l5(func(s string) string {
			return strings.Replace(s, `"source_ip":`, `"path":"/app/prod/other","source_ip":`, 1)
		}), 5, 5, `duplicate key "path"`},
		{"duplicate key, same value", l5(func(s string) string {
			return strings.Replace(s, `,"result":`, `,"node":"node-1","result":`, 1)
		}), 5, 5, `duplicate key "node"`},
		{"duplicate key in principal", l5(func(s string) string {
			return strings.Replace(s, `"name":`, `"accessor":"x","name":`, 1)
		}), 5, 5, `duplicate key "accessor" in principal`},
		{"gap", bytes.Join(append(bytes.SplitAfter(good, []byte("\n"))[:3], bytes.SplitAfter(good, []byte("\n"))[4:]...), nil), 4, 4, "seq 4 is missing"},
		{"repeat", bytes.Join(append(bytes.SplitAfter(good, []byte("\n"))[:4], bytes.SplitAfter(good, []byte("\n"))[3:]...), nil), 5, 5, "comes after"},
		{"seq as string", l5(func(s string) string { return strings.Replace(s, `"seq":5`, `"seq":"5"`, 1) }), 5, 5, "seq must be a number, not a string"},
		{"seq as float", l5(func(s string) string { return strings.Replace(s, `"seq":5`, `"seq":5.0`, 1) }), 5, 5, "seq must be an integer"},
		{"seq exponent", l5(func(s string) string { return strings.Replace(s, `"seq":5`, `"seq":5e0`, 1) }), 5, 5, "seq must be an integer"},
		{"negative version", replaceLine(good, 3, func(s string) string { return strings.Replace(s, `"result"`, `"version":-1,"result"`, 1) }), 3, 3, "version must be an integer"},
		{"kms_key_version over 32 bits", replaceLine(good, 3, func(s string) string {
			return strings.Replace(s, `"result"`, `"kms_key_version":4294967296,"result"`, 1)
		}), 3, 3, "kms_key_version must be an integer"},
		{"path as array", l5(func(s string) string { return strings.Replace(s, `"source_ip":`, `"path":["/a"],"source_ip":`, 1) }), 5, 5, "path must be a string"},
		{"null principal", l5(func(s string) string {
			i, j := strings.Index(s, `"principal":`), strings.Index(s, `,"source_ip"`)
			return s[:i] + `"principal":null` + s[j:]
		}), 5, 5, "principal"},
		{"unknown field", l5(func(s string) string { return strings.Replace(s, `"result"`, `"note":"x","result"`, 1) }), 5, 5, `unknown field "note"`},
		{"missing field", l5(func(s string) string {
			i, j := strings.Index(s, `,"node":`), strings.Index(s, `,"request_id"`)
			return s[:i] + s[j:]
		}), 5, 5, `missing field "node"`},
		{"time not canonical", l5(func(s string) string { return strings.Replace(s, `Z"`, `+00:00"`, 1) }), 5, 5, "canonical"},
		{"escaped surrogate", l5(func(s string) string { return strings.Replace(s, `"source_ip":"`, `"source_ip":"\ud800`, 1) }), 5, 5, "surrogate"},
		{"invalid UTF-8", l5(func(s string) string { return strings.Replace(s, `"source_ip":"`, "\"source_ip\":\"\xff", 1) }), 5, 5, "UTF-8"},
		{"two values", l5(func(s string) string { return s + ` {}` }), 5, 5, "more than one JSON value"},
		{"array", l5(func(string) string { return `[1]` }), 5, 5, "not a JSON object"},
		{"field altered", l5(func(s string) string { return strings.Replace(s, `"10.0.0.1"`, `"10.0.0.2"`, 1) }), 5, 5, "hash does not match"},
		{"junk line", l5(func(string) string { return "hello" }), 5, 5, "invalid JSON"},
		{"empty line", l5(func(string) string { return "" }), 5, 5, "empty line"},
		{"junk at the end", append(append([]byte(nil), good...), "{\"seq\":9\n"...), 9, 9, "not an audit entry"},
		{"duplicate key on the last line, no newline", bytes.TrimSuffix(replaceLine(good, 8, func(s string) string {
			return strings.Replace(s, `,"result":`, `,"action":"x","result":`, 1)
		}), []byte("\n")), 8, 8, `duplicate key "action"`},
		{"first line bad", replaceLine(good, 1, func(s string) string { return strings.Replace(s, `"result"`, `"result":"ok","result"`, 1) }), 1, 1, "duplicate"},
		{"too long", l5(func(s string) string {
			return strings.Replace(s, `"result"`, `"reason":"`+strings.Repeat("a", MaxLineBytes)+`","result"`, 1)
		}), 5, 5, "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := verifyBytes(t, tc.file)
			if r.OK || r.FirstBroken != tc.broken || r.Line != tc.line || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("got %+v\nwant broken seq %d at line %d, reason containing %q", r, tc.broken, tc.line, tc.reason)
			}
		})
	}
}

func TestVerifyJSONLTornLines(t *testing.T) {
	entries, _ := chain(Head{}, 6)
	lines := strings.SplitAfter(string(jsonLines(entries)), "\n")
	// A crash mid-write left a prefix of entry 4; the node wrote entry 4
	// again in full on the next line (FileSink starts with a newline).
	torn := strings.Join(lines[:3], "") + lines[3][:40] + "\n" + strings.Join(lines[3:], "")
	if r := verifyBytes(t, []byte(torn)); !r.OK || r.Entries != 6 || r.TornLines != 1 {
		t.Fatalf("torn line: %+v", r)
	}
	// Two crashes in a row on the same entry.
	torn2 := strings.Join(lines[:3], "") + lines[3][:20] + "\n" + lines[3][:60] + "\n" + strings.Join(lines[3:], "")
	if r := verifyBytes(t, []byte(torn2)); !r.OK || r.TornLines != 2 {
		t.Fatalf("two torn lines: %+v", r)
	}
	// A file that ends mid-line (a write in progress) is fine up to there.
	tail := strings.Join(lines[:5], "") + lines[5][:30]
	if r := verifyBytes(t, []byte(tail)); !r.OK || r.Entries != 5 || !r.TornTail {
		t.Fatalf("torn tail: %+v", r)
	}
	// A fragment that is not a prefix of the next line is not a torn line.
	bad := strings.Join(lines[:3], "") + lines[2][:40] + "\n" + strings.Join(lines[3:], "")
	if r := verifyBytes(t, []byte(bad)); r.OK || r.Line != 4 {
		t.Fatalf("fragment of another entry: %+v", r)
	}
}

func ExampleVerifyJSONL() {
	entries, _ := chain(Head{}, 3)
	file := jsonLines(entries)
	file = replaceLine(file, 2, func(s string) string {
		return strings.Replace(s, `"action":`, `"action":"secrets.list","action":`, 1)
	})
	r, _ := VerifyJSONL(bytes.NewReader(file), FileOptions{})
	fmt.Println(r.OK, r.FirstBroken, r.Reason)
	// Output: false 2 line 2: duplicate key "action"
}
