package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// encodingJSON is what writeJSON (encoding/json) writes for v.
func encodingJSON(t testing.TB, v *apitypes.GetSecretValueResponse) []byte {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var trickyStrings = []string{
	"", "/app/db/password", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"ctl \x00\x01\x07\b\f\n\r\t\x1f\x7f", "é ü 日本 🔑", "line\u2028sep\u2029para",
	"bad utf8 \xff\xfe \xc3", "truncated \xe2\x82", "\xed\xa0\x80 surrogate", strings.Repeat("a", 600),
}

func TestValueJSONMatchesEncodingJSON(t *testing.T) {
	times := []time.Time{
		time.Unix(0, 0).UTC(), time.Unix(1764576000, 0).UTC(), time.Unix(1764576000, 120000000).UTC(),
		time.Unix(1764576000, 123456789).UTC(), time.Unix(1764576000, 1).UTC(), time.Unix(-1, 0).UTC(),
	}
	values := [][]byte{nil, {}, []byte("s3cr3t"), bytes.Repeat([]byte{0xff, 0, '"'}, 100)}
	var cases []*apitypes.GetSecretValueResponse
	for i, s := range trickyStrings {
		cases = append(cases, &apitypes.GetSecretValueResponse{
			SecretValue: apitypes.SecretValue{Path: s, UID: trickyStrings[(i+3)%len(trickyStrings)], Version: uint64(i),
				Value: values[i%len(values)], CreatedAt: times[i%len(times)]},
			Index: uint64(i) << 40,
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		cases = append(cases, &apitypes.GetSecretValueResponse{
			SecretValue: apitypes.SecretValue{Path: randomString(rng), UID: randomString(rng), Version: rng.Uint64(),
				Value: []byte(randomString(rng)), CreatedAt: time.Unix(0, rng.Int64()).UTC()},
			Index: rng.Uint64(),
		})
	}
	// Worst cases for the size bound: every byte escaped to six.
	worst := strings.Repeat("\x00\xff", 300) + strings.Repeat("\u2028", 100)
	cases = append(cases, &apitypes.GetSecretValueResponse{
		SecretValue: apitypes.SecretValue{Path: worst, UID: worst, Version: ^uint64(0), Value: make([]byte, 19999), CreatedAt: time.Unix(0, -1<<63).UTC()},
		Index:       ^uint64(0),
	})
	for _, v := range cases {
		want := encodingJSON(t, v)
		got := appendSecretValueJSON(nil, v)
		if !bytes.Equal(got, want) {
			t.Fatalf("for %#v\n got %s\nwant %s", v, got, want)
		}
		if len(got) > v.JSONSizeBound() {
			t.Fatalf("answer of %d bytes, over its bound %d: the buffer would grow and leave a copy of the value", len(got), v.JSONSizeBound())
		}
	}
}

// randomString mixes ASCII, escapes, multi-byte runes and invalid bytes.
func randomString(rng *rand.Rand) string {
	pieces := []string{"a", "Z", "/", "\"", "\\", "<", ">", "&", "\n", "\x00", "\x1f", "é", "日", "🔑", "\u2028", "\xff", "\xe2\x82", " "}
	var sb strings.Builder
	for range rng.IntN(20) {
		sb.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return sb.String()
}

func FuzzValueJSON(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s, []byte(s), int64(1764576000123456789))
	}
	f.Fuzz(func(t *testing.T, s string, value []byte, nanos int64) {
		v := &apitypes.GetSecretValueResponse{SecretValue: apitypes.SecretValue{Path: s, UID: s, Version: 7, Value: value, CreatedAt: time.Unix(0, nanos).UTC()}, Index: 9}
		got, want := appendSecretValueJSON(nil, v), encodingJSON(t, v)
		if !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
		if len(got) > v.JSONSizeBound() {
			t.Fatalf("answer of %d bytes, over its bound %d", len(got), v.JSONSizeBound())
		}
	})
}

func TestWriteSecretValue(t *testing.T) {
	value := []byte("marker-value-0f3c")
	v := &apitypes.GetSecretValueResponse{SecretValue: apitypes.SecretValue{Path: "/app/x", UID: "u1", Version: 2, Value: value, CreatedAt: time.Unix(1764576000, 5).UTC()}, Index: 42}
	want := encodingJSON(t, v)
	rec := httptest.NewRecorder()
	writeSecretValue(rec, v)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Content-Length") != itoa(len(want)) {
		t.Fatalf("status %d, headers %v", rec.Code, rec.Header())
	}
	if !bytes.Equal(rec.Body.Bytes(), want) {
		t.Fatalf("body %s, want %s", rec.Body.Bytes(), want)
	}
	if !bytes.Equal(value, make([]byte, len(value))) {
		t.Fatal("the plaintext was not wiped after the answer was written")
	}
	// The pooled buffer went back wiped: nothing of the value stays in it.
	bp := valueBufs.Get().(*[]byte)
	if b := (*bp)[:cap(*bp)]; bytes.Contains(b, []byte("bWFya2Vy")) || bytes.Contains(b, []byte("marker")) {
		t.Fatal("the pooled buffer still holds the value")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func BenchmarkValueJSON(b *testing.B) {
	v := &apitypes.GetSecretValueResponse{SecretValue: apitypes.SecretValue{Path: "/bench/k000123", UID: "0123456789abcdef0123456789abcdef", Version: 3,
		Value: bytes.Repeat([]byte{'x'}, 256), CreatedAt: time.Unix(1764576000, 123456789).UTC()}, Index: 123456}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			_ = json.NewEncoder(&buf).Encode(v)
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = appendSecretValueJSON(buf[:0], v)
		}
	})
}
