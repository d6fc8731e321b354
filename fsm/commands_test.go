package fsm

import (
	"bytes"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/vmihailenco/msgpack/v5"
)

// The hand-written batch decoder must read every entry the reflective
// encoder ever wrote (logs outlive builds), and refuse truncated ones.
func TestWireBatchRoundTrip(t *testing.T) {
	var cmds, bodies [][]byte
	for i, body := range []string{"", "x", string(bytes.Repeat([]byte("v"), 300)), string(bytes.Repeat([]byte("w"), 70000))} {
		env := Envelope{Type: CmdPutValue, Body: []byte(body), Caller: "acc", Path: "/p", Audit: []apitypes.AuditEntry{{Action: "secrets.put_value", Path: "/p", Version: uint64(i)}}}
		c, err := EncodeEnvelope(&env)
		if err != nil {
			t.Fatal(err)
		}
		cmds, bodies = append(cmds, c), append(bodies, env.Body)
	}
	for _, n := range []int{0, 1, len(cmds)} {
		entry, err := EncodeRawBatch(1234567890123, cmds[:n])
		if err != nil {
			t.Fatal(err)
		}
		// What the reflective encoder made of the same batch before.
		old, err := msgpack.Marshal(&wireBatch{Time: 1234567890123, Cmds: cmds[:n]})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(entry[1:], old) {
			t.Fatalf("%d commands: encoding changed", n)
		}
		b, err := DecodeBatch(entry)
		if err != nil {
			t.Fatalf("%d commands: %v", n, err)
		}
		if b.Time != 1234567890123 || len(b.Cmds) != n {
			t.Fatalf("%d commands: decoded time %d, %d commands", n, b.Time, len(b.Cmds))
		}
		for i := range b.Cmds {
			if b.Cmds[i].Audit[0].Version != uint64(i) || !bytes.Equal(b.Cmds[i].Body, bodies[i]) {
				t.Fatalf("command %d decoded as %+v", i, b.Cmds[i])
			}
		}
		for cut := 1; cut < len(entry); cut += 1 + len(entry)/50 {
			if _, err := DecodeBatch(entry[:cut]); err == nil {
				t.Fatalf("%d commands: entry cut at %d of %d decoded without error", n, cut, len(entry))
			}
		}
	}
}
