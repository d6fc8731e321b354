package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

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

// DecodeBatch shares repeated strings across a batch's commands (through a
// small cache that distinct strings collide in): every command must still
// decode exactly as it does alone.
func TestDecodeBatchSharedStrings(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	word := func(pool int) string { // a string from a pool of the given size
		return strings.Repeat("ab", rnd.IntN(3)) + fmt.Sprintf("w%d", rnd.IntN(pool))
	}
	var cmds [][]byte
	var want []Envelope
	for i := range 500 {
		env := Envelope{Type: CmdAuditOnly, Body: []byte{byte(i)}, Caller: word(5), Action: word(3), Path: word(400), Source: word(50)}
		for range rnd.IntN(4) {
			env.Audit = append(env.Audit, apitypes.AuditEntry{
				Seq: uint64(i), Time: time.Unix(0, int64(i)+1).UTC(), Node: word(3), RequestID: word(1000), Action: word(10),
				Principal: apitypes.Principal{Accessor: word(5), Name: word(5)}, SourceIP: word(50), Path: word(400),
				Version: uint64(i), KMSKey: word(4), KMSKeyVersion: uint32(i), Result: word(3), ErrorCode: word(3), Reason: word(300),
				PrevHash: word(1000), Hash: word(1000),
			})
		}
		c, err := EncodeEnvelope(&env)
		if err != nil {
			t.Fatal(err)
		}
		var alone Envelope
		if err := msgpack.Unmarshal(c, &alone); err != nil {
			t.Fatal(err)
		}
		cmds, want = append(cmds, c), append(want, alone)
	}
	entry, err := EncodeRawBatch(1, cmds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeBatch(entry)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !reflect.DeepEqual(b.Cmds[i], want[i]) {
			t.Fatalf("command %d:\n got %+v\nwant %+v", i, b.Cmds[i], want[i])
		}
	}
}
