package apitypes

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// AppendJSON must write exactly what encoding/json writes, whatever the
// strings hold (HTML characters, controls, invalid UTF-8, U+2028).
func TestAuditEntryAppendJSONMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"", "a", "/app/db", "<script>&", "\"q\"\\", "\n\r\t\b\f\x00\x1f\x7f", "é€😀", "\u2028\u2029", "\xff\xfe", "\xe2\x82", " "}
	str := func() string {
		var s string
		for range rng.IntN(4) {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		e := AuditEntry{
			Seq: rng.Uint64N(1 << uint(rng.IntN(64))), Time: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC(),
			Node: str(), RequestID: str(), Action: str(), Principal: Principal{Accessor: str(), Name: str()},
			SourceIP: str(), Path: str(), Version: rng.Uint64N(3), KMSKey: str(), KMSKeyVersion: uint32(rng.IntN(3)),
			Result: str(), ErrorCode: str(), Reason: str(), PrevHash: str(), Hash: str(),
		}
		if i%3 == 0 {
			e.Time = e.Time.In(berlin)
		}
		if i%5 == 0 {
			e.Time = e.Time.Truncate(time.Second)
		}
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("entry %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func BenchmarkAuditEntryJSON(b *testing.B) {
	e := AuditEntry{Seq: 350438, Time: time.Now().UTC(), Node: "n3", RequestID: "06ad0922a97a46607e673f5840db266c", Action: "secrets.put_value",
		Principal: Principal{Accessor: "f537257596aad31178ddcc4b0ddc3af8", Name: "root"}, SourceIP: "127.0.0.1", Path: "/bench/k0000886",
		Version: 219, KMSKey: "default", KMSKeyVersion: 1, Result: "ok",
		PrevHash: "6b4dff42e6214994d9d5b0bc8aef2d4d495d300b9aa998485c9d5c72c081e2fc", Hash: "fc3b2117837574607dd3050d0d8a463db55a073243d07190a2e1485cab31bc1b"}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&e)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = e.AppendJSON(buf[:0])
		}
	})
}
