package apitypes

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestAuditEntryMsgpackRoundTrip(t *testing.T) {
	in := []AuditEntry{
		{Seq: 7, Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Node: "n1", RequestID: "r", Action: "secrets.get_value",
			Principal: Principal{Accessor: "acc", Name: "app"}, SourceIP: "10.0.0.1", Path: "/a/b", Version: 3, KMSKey: "default",
			KMSKeyVersion: 2, Result: "error", ErrorCode: "Gone", Reason: "why", PrevHash: "ph", Hash: "h"},
		{}, // zero values, zero time
	}
	b, err := msgpack.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out []AuditEntry
	if err := msgpack.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("round trip:\n%+v\n%+v", in, out)
	}
	var one AuditEntry
	if err := msgpack.Unmarshal(b[:len(b)-3], &one); err == nil {
		t.Fatal("truncated entry decoded")
	}
}

func BenchmarkAuditEntryMsgpack(b *testing.B) {
	e := AuditEntry{Seq: 7, Time: time.Now(), Node: "n1", RequestID: "0123456789abcdef0123456789abcdef", Action: "secrets.get_value",
		Principal: Principal{Accessor: "0123456789abcdef0123456789abcdef", Name: "app"}, SourceIP: "10.0.0.1", Path: "/app/prod/api/db",
		Version: 3, KMSKey: "default", KMSKeyVersion: 2, Result: "ok"}
	for i := 0; i < b.N; i++ {
		buf, _ := msgpack.Marshal(&e)
		var out AuditEntry
		_ = msgpack.Unmarshal(buf, &out)
	}
}
