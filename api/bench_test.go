package api

import (
	"reflect"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
)

// BenchmarkDecodePut is the strict decoding of a putSecretValue body with a
// 256-byte value (the hot path of every write).
func BenchmarkDecodePut(b *testing.B) {
	raw := []byte(`{"path":"/app/prod/api/db-password","value":"` + string(make([]byte, 0)) + `c2VjcmV0LXZhbHVlLXRoYXQtaXMtMjU2LWJ5dGVzLWxvbmctLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0tLS0t","expected_version":3}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var req apitypes.PutSecretValueRequest
		if err := decode(raw, &req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckExactKeysFull is the full case-folding check (a body with
// an upper-case key).
func BenchmarkCheckExactKeysFull(b *testing.B) {
	raw := []byte(`{"path":"/a/b","labels":{"Team":"x"}}`)
	t := reflect.TypeOf(&apitypes.CreateSecretRequest{})
	for i := 0; i < b.N; i++ {
		_ = checkExactKeys(raw, t)
	}
}
