package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/vmihailenco/msgpack/v5"
)

func randomSecret(rng *rand.Rand, i int) *Secret {
	str := func() string {
		if rng.IntN(4) == 0 {
			return ""
		}
		return fmt.Sprintf("s%x", rng.Uint64()>>rng.IntN(64))
	}
	byts := func() []byte {
		if rng.IntN(4) == 0 {
			return nil
		}
		b := make([]byte, rng.IntN(300)+1)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		return b
	}
	s := &Secret{Path: fmt.Sprintf("/p/%d", i), UID: str(), KMSKey: str(), Description: str(), CreatedAt: rng.Int64() - rng.Int64(),
		CreatedBy: str(), UpdatedAt: int64(rng.Uint32())}
	if rng.IntN(3) == 0 {
		s.Labels = map[string]string{"env": str(), str() + "x": "y"}
	}
	if rng.IntN(3) == 0 {
		s.AccessPolicy = &apitypes.AccessPolicy{SourceCIDRs: []string{"10.0.0.0/8"}}
	}
	for n := range rng.IntN(4) {
		v := &Version{Version: uint64(n + 1), Destroyed: rng.IntN(3) == 0, CreatedAt: rng.Int64(), CreatedBy: str(), Origin: str(),
			Size: rng.IntN(70000), KMSKey: str(), KMSKeyVersion: rng.Uint32(), Ciphertext: byts(), WrappedDEK: byts()}
		s.Versions = append(s.Versions, v)
	}
	if len(s.Versions) > 0 && rng.IntN(5) == 0 {
		s.Versions[0] = nil
	}
	return s
}

// TestRecordDecoderMatchesReflection: secrets encoded as snapshots encode
// them decode by hand exactly as msgpack's reflective decoder decodes them.
func TestRecordDecoderMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		in := randomSecret(rng, i)
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.SetSortMapKeys(true)
		if err := enc.Encode(in); err != nil {
			t.Fatal(err)
		}
		var want, got Secret
		if err := msgpack.Unmarshal(buf.Bytes(), &want); err != nil {
			t.Fatal(err)
		}
		if err := newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(buf.Bytes()))).secret(&got); err != nil {
			t.Fatalf("secret %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("secret %d: decoded by hand %+v, by reflection %+v", i, got, want)
		}
	}
}

// TestRecordDecoderUnknownAndBad: unknown fields (a newer writer's) are
// skipped, and truncated or mistyped records are errors, not panics.
func TestRecordDecoderUnknownAndBad(t *testing.T) {
	type newerVersion struct {
		Version uint64         `msgpack:"n"`
		Future  map[string]int `msgpack:"future_field_with_a_long_name"`
		Size    int            `msgpack:"sz"`
	}
	type newerSecret struct {
		Path     string          `msgpack:"p"`
		Extra    []string        `msgpack:"zz"`
		Versions []*newerVersion `msgpack:"vs"`
		UID      string          `msgpack:"u"`
	}
	data, err := msgpack.Marshal(&newerSecret{Path: "/a", Extra: []string{"x"}, UID: "u1",
		Versions: []*newerVersion{{Version: 1, Future: map[string]int{"a": 1}, Size: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	var s Secret
	if err := newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(data))).secret(&s); err != nil {
		t.Fatal(err)
	}
	if s.Path != "/a" || s.UID != "u1" || len(s.Versions) != 1 || s.Versions[0].Version != 1 || s.Versions[0].Size != 3 {
		t.Fatalf("decoded %+v (version %+v)", s, s.Versions[0])
	}
	full, _ := msgpack.Marshal(randomSecret(rand.New(rand.NewPCG(3, 4)), 1))
	for cut := range len(full) {
		var s Secret
		_ = newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(full[:cut]))).secret(&s)
	}
	mistyped, _ := msgpack.Marshal(map[string]any{"p": 5})
	if err := newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(mistyped))).secret(&s); err == nil || !strings.Contains(err.Error(), `field "p"`) {
		t.Fatalf("a mistyped record: %v, want an error naming field \"p\"", err)
	}
	// {"cb": a 9-byte string of which 2 bytes are there}: the error names
	// the field, not the bytes of the value read after it.
	truncated := []byte{0x81, 0xa2, 'c', 'b', 0xa9, 'x', 'y'}
	if err := newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(truncated))).secret(&s); err == nil || !strings.Contains(err.Error(), `field "cb"`) {
		t.Fatalf("a truncated record: %v, want an error naming field \"cb\"", err)
	}
}

// TestRecordDecoderLyingLengths: lengths larger than the data (a corrupt
// or crafted snapshot file) fail without allocating what they claim.
func TestRecordDecoderLyingLengths(t *testing.T) {
	for name, data := range map[string][]byte{
		// {"vs": array32 of 2^31 versions}, then nothing
		"versions": append([]byte{0x81, 0xa2, 'v', 's', 0xdd}, 0x80, 0, 0, 0),
		// {"k": str32 of 2^31 bytes}, then 3 bytes
		"string": append([]byte{0x81, 0xa1, 'k', 0xdb}, 0x80, 0, 0, 0, 'a', 'b', 'c'),
		// a key of 2^31 bytes
		"key": append([]byte{0x81, 0xdb}, 0x80, 0, 0, 0, 'a'),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var s Secret
		err := newRecordDecoder(msgpack.NewDecoder(bytes.NewReader(data))).secret(&s)
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("%s: a truncated record decoded without error", name)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
			t.Errorf("%s: allocated %d bytes for a record of %d", name, grew, len(data))
		}
	}
}

// TestWriteSecretMatchesReflection: the hand-written encoder gives the
// bytes of msgpack's reflective one, as WriteState configures it, so
// identical states still give identical snapshots.
func TestWriteSecretMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	secrets := []*Secret{{}, {Versions: []*Version{}}, {Versions: []*Version{nil, {}}}, {Labels: map[string]string{}}}
	for i := range 2000 {
		secrets = append(secrets, randomSecret(rng, i))
	}
	for i, s := range secrets {
		var want, got bytes.Buffer
		we, ge := msgpack.NewEncoder(&want), msgpack.NewEncoder(&got)
		we.SetSortMapKeys(true)
		ge.SetSortMapKeys(true)
		if err := we.Encode(s); err != nil {
			t.Fatal(err)
		}
		if err := writeSecret(ge, s); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("secret %d (%+v): hand-written\n%x\nreflective\n%x", i, s, got.Bytes(), want.Bytes())
		}
	}
}
