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

// BenchmarkCheckStrictNested is the strict walk (duplicate keys, types,
// UTF-8, base64) of a body with nested objects and an upper-case key.
func BenchmarkCheckStrictNested(b *testing.B) {
	raw := []byte(`{"path":"/a/b","labels":{"Team":"x","env":"prod"},"access_policy":{"source_cidrs":["10.0.0.0/8"]},"value":"c2VjcmV0"}`)
	t := reflect.TypeOf(&apitypes.CreateSecretRequest{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := checkStrict(raw, t); err != nil {
			b.Fatal(err)
		}
	}
}
