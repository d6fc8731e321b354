package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/vmihailenco/msgpack/v5"
)

// vsHex is a lowercase hex string of n digits made from seed, in the
// format of accessors and uids (32) or token hashes (64).
func vsHex(seed string, n int) string {
	sum := sha256.Sum256([]byte(seed))
	return strings.Repeat(hex.EncodeToString(sum[:]), 2)[:n]
}

var (
	vsRootAcc  = vsHex("root", 32)
	vsRootHash = vsHex("root-token", 64)
)

func vsSealed(key string, kv uint32, size int) *SealedValue {
	return &SealedValue{Ciphertext: []byte(fmt.Sprintf("ct-%d-%s", size, key)), WrappedDEK: []byte("dek-" + key), Size: size, KMSKey: key, KMSKeyVersion: kv}
}

func vsEnv(t testing.TB, typ CmdType, body any) Envelope { return ftEnv(t, typ, body, "") }

// vsBoot returns a harness whose FSM holds an initialized cluster, with
// the formats the API makes (hex accessors, uids and hashes).
func vsBoot(t testing.TB) *ftHarness {
	h := newFtHarness(t)
	for _, env := range []Envelope{
		vsEnv(t, CmdInitCluster, &InitCluster{ClusterID: "c-" + vsHex("cluster", 8), DefaultKey: []byte("wrapped-default"), RootFingerprint: "fp"}),
		vsEnv(t, CmdInitRoot, &InitRoot{Accessor: vsRootAcc, Hash: vsRootHash}),
	} {
		if r := h.one(env); r.Err != nil {
			t.Fatalf("boot: %v", r.Err)
		}
	}
	return h
}

// vsPopulated returns a harness whose state has what Apply makes of a
// cluster in use: rotated, disabled, pending and destroyed keys; secrets
// with destroyed versions, labels, access policies, a rebound one and one
// bound to the destroyed key; tokens with expiry and source CIDRs, a
// revoked one; a custom policy with conditions.
func vsPopulated(t testing.TB) *ftHarness {
	h := vsBoot(t)
	ok := func(what string, env Envelope) {
		t.Helper()
		if r := h.one(env); r.Err != nil {
			t.Fatalf("%s: %v", what, r.Err)
		}
	}
	uid := func(p string) string { return vsHex("uid"+p, 32) }
	for _, k := range []string{"k2", "k3", "k4", "k5"} {
		ok("create "+k, vsEnv(t, CmdCreateKey, &CreateKey{Name: k, Description: "key " + k, Wrapped: []byte("wrapped-" + k)}))
	}
	ok("rotate k2", vsEnv(t, CmdRotateKey, &RotateKey{Name: "k2", Version: 2, Wrapped: []byte("wrapped-k2-2")}))
	ap := &apitypes.AccessPolicy{SourceCIDRs: []string{"10.0.0.0/8"}, TimeWindows: []apitypes.TimeWindow{{Days: []string{"mon", "tue"}, Start: "09:00", End: "17:00", Timezone: "Europe/Paris"}}}
	ok("create /app/db", vsEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/db", UID: uid("/app/db"), KMSKey: "default", Description: "db",
		Labels: map[string]string{"env": "prod"}, AccessPolicy: ap, Value: vsSealed("default", 1, 10), CreatedBy: vsRootAcc}))
	for i := 0; i < 2; i++ {
		ok("put /app/db", vsEnv(t, CmdPutValue, &PutValue{Path: "/app/db", UID: uid("/app/db"), Value: *vsSealed("default", 1, 20+i), Origin: apitypes.OriginPut, CreatedBy: vsRootAcc}))
	}
	ok("destroy /app/db v2", vsEnv(t, CmdDestroyVersion, &DestroyVersion{Path: "/app/db", Version: 2}))
	ok("rebind /app/db", vsEnv(t, CmdRebindSecretKey, &RebindSecretKey{Path: "/app/db", UID: uid("/app/db"), FromKey: "default", ToKey: "k2", ToKeyVersion: 2,
		Versions: []RewrappedDEK{{Version: 1, FromKey: "default", FromKeyVersion: 1, WrappedDEK: []byte("re1")}, {Version: 3, FromKey: "default", FromKeyVersion: 1, WrappedDEK: []byte("re3")}}}))
	ok("create /app/empty", vsEnv(t, CmdCreateSecret, &CreateSecret{Path: "/app/empty", UID: uid("/app/empty"), KMSKey: "default", CreatedBy: vsRootAcc}))
	ok("generate /gen/a", vsEnv(t, CmdPutValue, &PutValue{Path: "/gen/a", UID: uid("/gen/a"), Value: *vsSealed("k4", 1, 32), Origin: apitypes.OriginGenerate, Create: true, CreatedBy: vsRootAcc}))
	ok("create /x/y/z", vsEnv(t, CmdCreateSecret, &CreateSecret{Path: "/x/y/z", UID: uid("/x/y/z"), KMSKey: "k5", Value: vsSealed("k5", 1, 3), CreatedBy: vsRootAcc}))
	ok("disable k5", vsEnv(t, CmdDisableKey, &DisableKey{Name: "k5"}))
	ok("schedule k3", vsEnv(t, CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k3", PendingDays: 7}))
	ok("schedule k4", vsEnv(t, CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k4", PendingDays: 7, Force: true}))
	h.now += 8 * 24 * int64(time.Hour)
	ok("destroy k4", vsEnv(t, CmdDestroyKey, &DestroyKey{Name: "k4"}))
	ok("put policy", vsEnv(t, CmdPutPolicy, &PutPolicy{Policy: acl.Policy{Name: "app-reader", Rules: []acl.Rule{
		{Effect: acl.EffectAllow, Actions: []string{"getSecretValue", "describeSecret"}, Paths: []string{"/app/*"},
			Conditions: &acl.Conditions{SourceCIDRs: []string{"10.0.0.0/8"}}},
		{Effect: acl.EffectDeny, Actions: []string{"*"}, Paths: []string{"/app/db"}},
	}}}))
	ok("token", vsEnv(t, CmdCreateToken, &CreateToken{Accessor: vsHex("t1", 32), Hash: vsHex("t1-token", 64), Name: "app", Policies: []string{"app-reader", "secrets-reader"},
		ExpiresAt: h.now + int64(time.Hour), SourceCIDRs: []string{"10.0.0.0/8", "2001:db8::/32"}}))
	ok("token 2", vsEnv(t, CmdCreateToken, &CreateToken{Accessor: vsHex("t2", 32), Hash: vsHex("t2-token", 64), Name: "gone", Policies: []string{"admin"}}))
	ok("revoke 2", vsEnv(t, CmdRevokeToken, &RevokeToken{Accessor: vsHex("t2", 32)}))
	return h
}

// vsCopy returns a shallow copy of st whose trees may be changed.
func vsCopy(st *State) *State {
	c := *st
	c.Secrets = st.Secrets.clone()
	return &c
}

// vsEditSecret returns st with fn applied to a deep copy of the secret at
// path (re-inserted under its possibly new path).
func vsEditSecret(st *State, path string, fn func(*Secret)) *State {
	c := vsCopy(st)
	s, ok := c.Secrets.delete(path)
	if !ok {
		panic("no secret " + path)
	}
	s = s.clone()
	for i, v := range s.Versions {
		nv := *v
		s.Versions[i] = &nv
	}
	fn(s)
	c.Secrets.insert(s)
	return c
}

func vsEditKey(st *State, name string, fn func(*Key)) *State {
	c := vsCopy(st)
	k, ok := st.Key(name)
	if !ok {
		panic("no key " + name)
	}
	k = k.clone()
	for i, v := range k.Versions {
		nv := *v
		k.Versions[i] = &nv
	}
	fn(k)
	c.Keys, _, _ = c.Keys.Insert([]byte(name), k)
	return c
}

func vsEditToken(st *State, acc string, fn func(*Token)) *State {
	c := vsCopy(st)
	t, ok := st.Token(acc)
	if !ok {
		panic("no token " + acc)
	}
	nt := *t
	fn(&nt)
	c.Tokens, _, _ = c.Tokens.Insert([]byte(acc), &nt)
	return c
}

func vsPutPolicy(st *State, p *acl.Policy) *State {
	c := vsCopy(st)
	c.Policies, _, _ = c.Policies.Insert([]byte(p.Name), p)
	return c
}

// States that Apply makes pass, as they are and after a snapshot round trip.
func TestValidateStateAcceptsAppliedStates(t *testing.T) {
	for name, st := range map[string]*State{"booted": vsBoot(t).f.State(), "populated": vsPopulated(t).f.State(), "empty": emptyState()} {
		if err := ValidateState(st); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var buf bytes.Buffer
		if err := WriteState(&buf, st); err != nil {
			t.Fatal(err)
		}
		got, err := ReadState(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateState(got); err != nil {
			t.Fatalf("%s after a round trip: %v", name, err)
		}
	}
}

// Every invariant has a case: the state is refused, directly and after a
// snapshot round trip, with an error naming the record.
func TestValidateStateRefuses(t *testing.T) {
	base := vsPopulated(t).f.State()
	t1 := vsHex("t1", 32)
	sec := func(fn func(*Secret)) func(*State) *State {
		return func(st *State) *State { return vsEditSecret(st, "/app/db", fn) }
	}
	key := func(name string, fn func(*Key)) func(*State) *State {
		return func(st *State) *State { return vsEditKey(st, name, fn) }
	}
	tok := func(fn func(*Token)) func(*State) *State {
		return func(st *State) *State { return vsEditToken(st, t1, fn) }
	}
	pol := func(fn func(*acl.Policy)) func(*State) *State {
		return func(st *State) *State {
			p := &acl.Policy{Name: "p1", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"*"}}}}
			fn(p)
			return vsPutPolicy(st, p)
		}
	}
	cases := []struct {
		name string
		edit func(*State) *State
		want string
	}{
		// secrets
		{"nil version", sec(func(s *Secret) { s.Versions[2] = nil }), "version 3 is missing"},
		{"gap in versions", sec(func(s *Secret) { s.Versions[2].Version = 4 }), "numbered 4"},
		{"duplicate version", sec(func(s *Secret) { s.Versions[1].Version = 1 }), "numbered 1"},
		{"version 0", sec(func(s *Secret) { s.Versions[0].Version = 0 }), "numbered 0"},
		{"path without slash", sec(func(s *Secret) { s.Path = "app/db" }), "must start with /"},
		{"path with dot-dot", sec(func(s *Secret) { s.Path = "/app/../db" }), "not allowed"},
		{"path with empty segment", sec(func(s *Secret) { s.Path = "/app//db" }), "empty segment"},
		{"bad uid", sec(func(s *Secret) { s.UID = "uid-a" }), "uid"},
		{"missing key", sec(func(s *Secret) { s.KMSKey = "nokey" }), "not in the snapshot"},
		{"description too long", sec(func(s *Secret) { s.Description = strings.Repeat("d", apitypes.MaxDescription+1) }), "description"},
		{"too many labels", sec(func(s *Secret) {
			s.Labels = map[string]string{}
			for i := range apitypes.MaxLabels + 1 {
				s.Labels[fmt.Sprint(i)] = "v"
			}
		}), "labels"},
		{"bad access policy", sec(func(s *Secret) { s.AccessPolicy = &apitypes.AccessPolicy{SourceCIDRs: []string{"nonsense"}} }), "access policy"},
		{"enabled version without ciphertext", sec(func(s *Secret) { s.Versions[0].Ciphertext = nil }), "no ciphertext"},
		{"enabled version without data key", sec(func(s *Secret) { s.Versions[2].WrappedDEK = nil }), "no wrapped data key"},
		{"destroyed version with ciphertext", sec(func(s *Secret) { s.Versions[1].Ciphertext = []byte("x") }), "destroyed but holds"},
		{"missing key version", sec(func(s *Secret) { s.Versions[0].KMSKeyVersion = 9 }), "version 9, which is not"},
		{"key version 0", sec(func(s *Secret) { s.Versions[0].KMSKeyVersion = 0 }), "version 0, which is not"},
		{"version under another key", sec(func(s *Secret) { s.Versions[0].KMSKey = "default" }), "bound to \"k2\""},
		{"negative size", sec(func(s *Secret) { s.Versions[0].Size = -1 }), "size"},
		{"version count", func(st *State) *State { c := vsCopy(st); c.VersionCount++; return c }, "counts"},
		// keys
		{"key version nil", key("k2", func(k *Key) { k.Versions[0] = nil }), "version 1 is missing"},
		{"key version numbering", key("k2", func(k *Key) { k.Versions[1].Version = 1 }), "numbered 1"},
		{"key without versions", key("k5", func(k *Key) { k.Versions = nil }), "no versions"},
		{"key state unknown", key("k5", func(k *Key) { k.State = "on" }), "unknown state"},
		{"pending without date", key("k3", func(k *Key) { k.DeletionDate = 0 }), "without a deletion date"},
		{"enabled with date", key("k2", func(k *Key) { k.DeletionDate = 5 }), "with a deletion date"},
		{"destroyed with material", key("k4", func(k *Key) { k.Versions[0].Wrapped = []byte("w") }), "destroyed key has material"},
		{"enabled without material", key("k2", func(k *Key) { k.Versions[1].Wrapped = nil }), "no material"},
		{"default key destroyed", key("default", func(k *Key) {
			k.State, k.DeletionDate, k.Versions[0].Wrapped = KeyDestroyed, 1, nil
		}), "default key"},
		{"key description too long", key("k2", func(k *Key) { k.Description = strings.Repeat("d", apitypes.MaxDescription+1) }), "description"},
		// tokens
		{"token with a chosen short hash", tok(func(tk *Token) { tk.Hash = "h1" }), "hash"},
		{"token hash uppercase", tok(func(tk *Token) { tk.Hash = strings.ToUpper(tk.Hash) }), "hash"},
		{"token hash not indexed", tok(func(tk *Token) { tk.Hash = vsHex("other", 64) }), "indexed"},
		{"token without policies", tok(func(tk *Token) { tk.Policies = nil }), "policies"},
		{"token with too many policies", tok(func(tk *Token) {
			tk.Policies = nil
			for i := range acl.MaxTokenPolicies + 1 {
				tk.Policies = append(tk.Policies, fmt.Sprintf("p%d", i))
			}
		}), "policies"},
		{"token naming a policy twice", tok(func(tk *Token) { tk.Policies = []string{"admin", "admin"} }), "twice"},
		{"token with a bad policy name", tok(func(tk *Token) { tk.Policies = []string{"Admin!"} }), "not allowed"},
		{"token without name", tok(func(tk *Token) { tk.Name = "" }), "name"},
		{"token with a bad CIDR", tok(func(tk *Token) { tk.SourceCIDRs = []string{"10.0.0.1/8"} }), "source_cidrs"},
		{"token negative expiry", tok(func(tk *Token) { tk.ExpiresAt = -1 }), "expiry"},
		{"token with a bad accessor", func(st *State) *State {
			c := vsCopy(st)
			tk := &Token{Accessor: "admin", Hash: vsHex("planted", 64), Name: "x", Policies: []string{"admin"}}
			c.Tokens, _, _ = c.Tokens.Insert([]byte(tk.Accessor), tk)
			c.TokenHashes, _, _ = c.TokenHashes.Insert([]byte(tk.Hash), tk.Accessor)
			return c
		}, "accessor"},
		{"two tokens, one hash", func(st *State) *State {
			c := vsCopy(st)
			old, _ := st.Token(t1)
			tk := &Token{Accessor: vsHex("planted", 32), Hash: old.Hash, Name: "x", Policies: []string{"admin"}}
			c.Tokens, _, _ = c.Tokens.Insert([]byte(tk.Accessor), tk)
			return c
		}, "share a hash"},
		// policies
		{"policy without rules", pol(func(p *acl.Policy) { p.Rules = nil }), "no rules"},
		{"oversized policy", pol(func(p *acl.Policy) {
			for len(p.Rules) <= acl.MaxRules {
				p.Rules = append(p.Rules, p.Rules[0])
			}
		}), "rules"},
		{"policy with too many paths", pol(func(p *acl.Policy) {
			for i := range acl.MaxRulePaths {
				p.Rules[0].Paths = append(p.Rules[0].Paths, fmt.Sprintf("/p/%d", i))
			}
		}), "paths"},
		{"policy with an unknown action", pol(func(p *acl.Policy) { p.Rules[0].Actions = []string{"rootAll"} }), "unknown action"},
		{"policy named like a built-in", pol(func(p *acl.Policy) { p.Name = acl.PolicyAdmin }), "built-in"},
		{"policy marked built-in", pol(func(p *acl.Policy) { p.BuiltIn = true }), "built-in"},
		{"policy with a bad name", pol(func(p *acl.Policy) { p.Name = "P 1" }), "not allowed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := c.edit(base)
			err := ValidateState(st)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ValidateState: %v, want an error containing %q", err, c.want)
			}
			var buf bytes.Buffer
			if err := WriteState(&buf, st); err != nil {
				t.Fatal(err)
			}
			// ReadState rebuilds the hash index from the tokens.
			if got, err := ReadState(&buf); err == nil && c.name != "token hash not indexed" {
				if err := ValidateState(got); err == nil {
					t.Fatal("accepted after a snapshot round trip")
				}
			}
		})
	}
	if err := ValidateState(base); err != nil {
		t.Fatalf("the edits changed the base state: %v", err)
	}
}

// Finding 5 at the state machine: a state with a nil version is refused by
// RestoreState's apply (InvalidArgument, nothing changes), and the secret
// it would have broken still takes new versions.
func TestRestoreStateRefusesInvalidState(t *testing.T) {
	h := vsPopulated(t)
	before := h.f.State()
	bad := vsEditSecret(before, "/app/db", func(s *Secret) { s.Versions[0] = nil })
	var buf bytes.Buffer
	if err := WriteState(&buf, bad); err != nil {
		t.Fatal(err)
	}
	r := h.one(vsEnv(t, CmdRestoreState, &RestoreState{State: buf.Bytes()}))
	ftWantCode(t, "restore of a nil version", r, errs.InvalidArgument)
	after := h.f.State()
	for name, eq := range map[string]bool{
		"secrets":  ftCanon(t, ftSecrets(t, before.Secrets)) == ftCanon(t, ftSecrets(t, after.Secrets)),
		"keys":     ftCanon(t, ftTree(t, before.Keys)) == ftCanon(t, ftTree(t, after.Keys)),
		"tokens":   ftCanon(t, ftTree(t, before.Tokens)) == ftCanon(t, ftTree(t, after.Tokens)),
		"policies": ftCanon(t, ftTree(t, before.Policies)) == ftCanon(t, ftTree(t, after.Policies)),
	} {
		if !eq {
			t.Fatalf("%s changed by a refused restore", name)
		}
	}
	uid := vsHex("uid/app/db", 32)
	r = h.one(vsEnv(t, CmdPutValue, &PutValue{Path: "/app/db", UID: uid, Value: *vsSealed("k2", 2, 5), Origin: apitypes.OriginPut}))
	ftWantCode(t, "put after the refused restore", r, "")
	// A valid state still restores.
	buf.Reset()
	if err := WriteState(&buf, before); err != nil {
		t.Fatal(err)
	}
	ftWantCode(t, "restore of a valid state", h.one(vsEnv(t, CmdRestoreState, &RestoreState{State: buf.Bytes()})), "")
	if s, _ := h.f.State().Secret("/app/db"); len(s.Versions) != 3 {
		t.Fatalf("after the valid restore: %d versions", len(s.Versions))
	}
}

// BenchmarkValidateState validates a state of 100,000 secrets (compare
// BenchmarkSnapshotRead: the validation adds to a restore's decoding).
func BenchmarkValidateState(b *testing.B) {
	st := benchState(b, 100_000)
	st.VersionCount = 100_000
	st.Keys, _, _ = st.Keys.Insert([]byte("default"), &Key{Name: "default", State: KeyEnabled, Versions: []*KeyVersion{{Version: 1, Wrapped: []byte("w")}}})
	if err := ValidateState(st); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := ValidateState(st); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/secret")
}

// A crafted length is refused before msgpack's reflective decoder
// allocates it (a 5-byte array header asked for hundreds of GB).
func TestCheckMsgpackBounds(t *testing.T) {
	for _, v := range []any{&Key{Name: "k", Versions: []*KeyVersion{{Version: 1, Wrapped: []byte("w")}}}, map[string]any{"a": []any{1, "x", 2.5, nil, true, []byte{1}}}, int64(-1 << 40)} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpackBounds(b); err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if len(b) > 1 && checkMsgpackBounds(b[:len(b)-1]) == nil {
			t.Fatalf("%T truncated: accepted", v)
		}
	}
	for _, b := range [][]byte{{0xdd, 0xdc, 0x72, 0x00, 0xcc}, {0xdf, 0x7f, 0, 0, 0, 0xa0}, {0xc6, 0x7f, 0, 0, 0}, {0x92, 0x01}, {0xc1}} {
		if err := checkMsgpackBounds(b); err == nil {
			t.Fatalf("% x accepted", b)
		}
	}
}
