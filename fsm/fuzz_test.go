package fsm

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/cofferhq/coffer/acl"
	"github.com/cofferhq/coffer/apitypes"
	"github.com/vmihailenco/msgpack/v5"
)

// The fuzz targets of the state machine's decoders (SPEC §6): a snapshot's
// state stream and a log entry's batch and commands. Seeds are added here
// from real encodings; testdata/fuzz/FuzzXxx holds more (inputs the fuzzer
// found interesting). Run one with
//
//	go test ./fsm -run '^$' -fuzz '^FuzzSnapshotRestore$' -fuzztime 60s

// fuzzStateSeeds are state streams of WriteState: valid ones, and ones
// that fail validation in the ways a crafted snapshot did.
func fuzzStateSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(st *State) {
		var buf bytes.Buffer
		if err := WriteState(&buf, st); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Bytes())
	}
	pop := vsPopulated(t).f.State()
	add(pop)
	add(vsBoot(t).f.State())
	add(emptyState())
	add(ftPopulated(t).f.State()) // test formats: refused by validation
	add(vsEditSecret(pop, "/app/db", func(s *Secret) { s.Versions[0] = nil }))
	add(vsEditSecret(pop, "/app/db", func(s *Secret) { s.Versions[2].KMSKeyVersion = 7 }))
	add(vsEditKey(pop, "k2", func(k *Key) { k.Versions = k.Versions[:1] }))
	add(vsEditToken(pop, vsHex("t1", 32), func(tk *Token) { tk.Policies = []string{"admin"} }))
	return out
}

// FuzzSnapshotRestore: no state a restore can bring makes a later command
// panic. A state stream that ReadState and ValidateState accept is
// restored through the log (RestoreState) into a running state machine,
// which then applies the commands of a cluster in use over every secret,
// key, token and policy it holds, and serves the read paths; afterwards
// the state is still valid (Apply keeps the invariants), and survives a
// snapshot round trip. A panic anywhere fails the target.
func FuzzSnapshotRestore(f *testing.F) {
	for _, s := range fuzzStateSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		st, err := ReadState(bytes.NewReader(stream))
		if err != nil {
			return
		}
		if err := ValidateState(st); err != nil {
			return
		}
		fuzzReads(st)
		h := vsBoot(t)
		if r := h.one(vsEnv(t, CmdRestoreState, &RestoreState{State: stream})); r.Err != nil {
			t.Fatalf("a validated state was refused at apply: %v", r.Err)
		}
		fuzzCommands(t, h)
		fuzzReads(h.f.State())
		var buf bytes.Buffer
		if err := WriteState(&buf, h.f.State()); err != nil {
			t.Fatal(err)
		}
		again, err := ReadState(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("the state after the commands does not read back: %v", err)
		}
		if err := ValidateState(again); err != nil {
			t.Fatalf("the commands made an invalid state: %v", err)
		}
		// A restart restores that state from a Raft snapshot.
		if err := h.f.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzReads runs the read paths over st: listings, metadata, bindings,
// token lookups and policy evaluation.
func fuzzReads(st *State) {
	now := FromNanos(ftT0)
	src := netip.MustParseAddr("10.1.2.3")
	_, _ = st.List("/", false, 50, "", nil)
	_, _ = st.List("/", true, 50, "", func(s *Secret) bool { return s.CurrentVersion() > 0 })
	_ = st.InactiveBound()
	var secrets []*Secret
	st.Secrets.Ascend("", func(s *Secret) bool {
		_ = s.Meta(true)
		_, _ = acl.CheckAccessPolicy(s.AccessPolicy, src, now)
		if v := s.Version(s.CurrentVersion()); v != nil && !v.Destroyed {
			_, _ = st.Key(v.KMSKey)
		}
		secrets = append(secrets, s)
		return len(secrets) < 32
	})
	st.Keys.Root().Walk(func(_ []byte, k *Key) bool {
		_ = k.Meta()
		_, _, _ = st.KeyBindings(k.Name, 10, "")
		return false
	})
	st.Tokens.Root().Walk(func(_ []byte, tk *Token) bool {
		_ = tk.Meta()
		_, _ = st.TokenByHash(tk.Hash)
		info := tk.AuthzInfo()
		for _, s := range secrets {
			_ = acl.Authorize(acl.AuthzRequest{Token: &info, Policy: st.Policy, Action: "getSecretValue", Path: s.Path, Source: src, Now: now, AccessPolicy: s.AccessPolicy})
		}
		_ = acl.Authorize(acl.AuthzRequest{Token: &info, Policy: st.Policy, Action: "sys.restore", Source: src, Now: now})
		return false
	})
}

// fuzzCommands applies, in phases (each computed from the state the last
// one left), what clients and the leader send: puts, generates, updates,
// rebinds, destroys, key lifecycle and root key rewrap, token and policy
// changes, commands authorized as the state's own tokens, and deletes.
func fuzzCommands(t *testing.T, h *ftHarness) {
	const most = 16 // records of each kind exercised
	phase := func(build func(st *State, add func(CmdType, any, ...string))) {
		var cmds []Envelope
		add := func(typ CmdType, body any, auth ...string) {
			env := vsEnv(t, typ, body)
			if len(auth) == 3 { // caller, action, path
				env.Caller, env.Action, env.Path, env.Source = auth[0], auth[1], auth[2], "10.1.2.3"
			}
			cmds = append(cmds, env)
		}
		build(h.f.State(), add)
		if len(cmds) > 0 {
			h.apply(cmds...)
		}
	}
	eachSecret := func(st *State, fn func(*Secret)) {
		n := 0
		st.Secrets.Ascend("", func(s *Secret) bool { fn(s); n++; return n < most })
	}
	eachKey := func(st *State, fn func(*Key)) {
		n := 0
		st.Keys.Root().Walk(func(_ []byte, k *Key) bool { fn(k); n++; return n >= most })
	}
	sealedFor := func(st *State, key string, size int) SealedValue {
		kv := uint32(1)
		if k, ok := st.Key(key); ok && len(k.Versions) > 0 {
			kv = uint32(len(k.Versions))
		}
		return *vsSealed(key, kv, size)
	}
	// Rebind every secret to the first other enabled key.
	phase(func(st *State, add func(CmdType, any, ...string)) {
		eachSecret(st, func(s *Secret) {
			var to *Key
			eachKey(st, func(k *Key) {
				if to == nil && k.Name != s.KMSKey && k.State == KeyEnabled {
					to = k
				}
			})
			if to == nil {
				return
			}
			c := &RebindSecretKey{Path: s.Path, UID: s.UID, FromKey: s.KMSKey, ToKey: to.Name, ToKeyVersion: uint32(len(to.Versions))}
			for _, v := range s.Versions {
				if !v.Destroyed {
					c.Versions = append(c.Versions, RewrappedDEK{Version: v.Version, FromKey: v.KMSKey, FromKeyVersion: v.KMSKeyVersion, WrappedDEK: []byte("rewrapped")})
				}
			}
			add(CmdRebindSecretKey, c)
		})
	})
	// Values and metadata.
	phase(func(st *State, add func(CmdType, any, ...string)) {
		eachSecret(st, func(s *Secret) {
			cur := s.CurrentVersion()
			add(CmdPutValue, &PutValue{Path: s.Path, UID: s.UID, ExpectedVersion: &cur, Value: sealedFor(st, s.KMSKey, 7), Origin: apitypes.OriginPut})
			add(CmdPutValue, &PutValue{Path: s.Path, UID: s.UID, Value: sealedFor(st, s.KMSKey, 8), Origin: apitypes.OriginGenerate, Create: true})
			add(CmdDestroyVersion, &DestroyVersion{Path: s.Path, Version: 1})
			add(CmdDestroyVersion, &DestroyVersion{Path: s.Path, Version: uint64(len(s.Versions))})
			add(CmdDestroyVersion, &DestroyVersion{Path: s.Path, Version: uint64(len(s.Versions)) + 5})
			d := "changed"
			labels := map[string]string{"k": "v"}
			add(CmdUpdateSecret, &UpdateSecret{Path: s.Path, Description: &d, Labels: &labels, AccessPolicy: &apitypes.AccessPolicy{}})
		})
		add(CmdPutValue, &PutValue{Path: "/fuzz/new", UID: vsHex("fuzz-new", 32), Value: sealedFor(st, DefaultKeyName, 9), Origin: apitypes.OriginGenerate, Create: true})
		add(CmdCreateSecret, &CreateSecret{Path: "/fuzz/made", UID: vsHex("fuzz-made", 32), KMSKey: DefaultKeyName, Value: func() *SealedValue { v := sealedFor(st, DefaultKeyName, 3); return &v }()})
	})
	// The root key rewrap covers every key at once.
	phase(func(st *State, add func(CmdType, any, ...string)) {
		c := &RewrapRootKey{Fingerprint: "fp-2"}
		st.Keys.Root().Walk(func(_ []byte, k *Key) bool {
			rk := RewrappedKey{Name: k.Name}
			for _, v := range k.Versions {
				var w []byte
				if v.Wrapped != nil {
					w = []byte("rewrapped-" + k.Name)
				}
				rk.Wrapped = append(rk.Wrapped, w)
			}
			c.Keys = append(c.Keys, rk)
			return false
		})
		add(CmdRewrapRootKey, c)
	})
	// Key lifecycle.
	var doomed string
	phase(func(st *State, add func(CmdType, any, ...string)) {
		eachKey(st, func(k *Key) {
			add(CmdRotateKey, &RotateKey{Name: k.Name, Version: uint32(len(k.Versions)) + 1, Wrapped: []byte("rotated")})
			add(CmdDisableKey, &DisableKey{Name: k.Name})
			add(CmdEnableKey, &EnableKey{Name: k.Name})
			add(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: k.Name, PendingDays: 7, Force: true})
			add(CmdCancelKeyDeletion, &CancelKeyDeletion{Name: k.Name})
			add(CmdEnableKey, &EnableKey{Name: k.Name})
			add(CmdDestroyKey, &DestroyKey{Name: k.Name})
			if doomed == "" && k.Name != DefaultKeyName {
				doomed = k.Name
			}
		})
		add(CmdCreateKey, &CreateKey{Name: "fuzz-key", Wrapped: []byte("new")})
		if doomed != "" {
			add(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: doomed, PendingDays: 7, Force: true})
		}
	})
	if doomed != "" {
		h.now += 31 * 24 * int64(time.Hour)
		phase(func(st *State, add func(CmdType, any, ...string)) {
			add(CmdDestroyKey, &DestroyKey{Name: doomed})
			eachSecret(st, func(s *Secret) {
				add(CmdPutValue, &PutValue{Path: s.Path, UID: s.UID, Value: sealedFor(st, s.KMSKey, 4), Origin: apitypes.OriginPut})
			})
		})
	}
	// Tokens and policies, and commands authorized as the state's tokens.
	phase(func(st *State, add func(CmdType, any, ...string)) {
		var paths []string
		eachSecret(st, func(s *Secret) { paths = append(paths, s.Path) })
		n := 0
		st.Tokens.Root().Walk(func(_ []byte, tk *Token) bool {
			for _, p := range paths {
				add(CmdPutValue, &PutValue{Path: p, UID: "x", Value: sealedFor(st, DefaultKeyName, 1), Origin: apitypes.OriginPut}, tk.Accessor, "putSecretValue", p)
			}
			add(CmdCreateToken, &CreateToken{Accessor: vsHex(fmt.Sprint("new", n), 32), Hash: tk.Hash, Name: "dup", Policies: []string{"admin"}}, tk.Accessor, "createToken", "")
			add(CmdRevokeToken, &RevokeToken{Accessor: tk.Accessor}, tk.Accessor, "revokeToken", "")
			n++
			return n >= most
		})
		add(CmdCreateToken, &CreateToken{Accessor: vsHex("fuzz-token", 32), Hash: vsHex("fuzz-token-hash", 64), Name: "fuzz", Policies: []string{"secrets-reader"}})
		st.Policies.Root().Walk(func(name []byte, _ *acl.Policy) bool {
			add(CmdDeletePolicy, &DeletePolicy{Name: string(name)})
			return false
		})
		add(CmdPutPolicy, &PutPolicy{Policy: acl.Policy{Name: "fuzz-policy", Rules: []acl.Rule{{Effect: acl.EffectAllow, Actions: []string{"*"}, Paths: []string{"/fuzz/*"}}}}})
	})
	// Deletes.
	phase(func(st *State, add func(CmdType, any, ...string)) {
		i := 0
		eachSecret(st, func(s *Secret) {
			if i%2 == 0 {
				add(CmdDeleteSecret, &DeleteSecret{Path: s.Path})
			}
			i++
		})
	})
}

// fuzzBatchSeeds are log entries as nodes make them.
func fuzzBatchSeeds(t testing.TB) [][]byte {
	var out [][]byte
	add := func(cmds ...Envelope) {
		b, err := EncodeBatch(&Batch{Time: ftT0, Cmds: cmds})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	put := ftEnv(t, CmdPutValue, &PutValue{Path: "/a/b", UID: vsHex("u", 32), Value: *vsSealed("default", 1, 5), Origin: "put"}, vsRootAcc,
		ftEntry("secrets.put_value", "/a/b"), ftEntry("kms.encrypt", "/a/b"))
	put.Action, put.Path, put.Source = "putSecretValue", "/a/b", "10.1.2.3"
	add(put)
	add(put, put, ftEnv(t, CmdAuditOnly, &AuditOnly{}, ""), ftEnv(t, CmdRevokeToken, &RevokeToken{Accessor: vsRootAcc}, vsRootAcc))
	add()
	add(ftEnv(t, CmdInitCluster, &InitCluster{ClusterID: "c", DefaultKey: []byte("k"), RootFingerprint: "fp"}, ""))
	var state bytes.Buffer
	if err := WriteState(&state, vsBoot(t).f.State()); err != nil {
		t.Fatal(err)
	}
	add(ftEnv(t, CmdRestoreState, &RestoreState{State: state.Bytes()}, vsRootAcc, ftEntry("sys.restore", "")))
	return out
}

// FuzzDecodeBatch: decoding arbitrary log entry bytes returns an error or
// a batch, never panics; a decoded batch encodes and decodes again.
func FuzzDecodeBatch(f *testing.F) {
	for _, s := range fuzzBatchSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{EntryBatch})
	f.Add([]byte{EntryBatch, 0x82, 0xa1, 't', 0x00, 0xa1, 'c', 0x91, 0xc4, 0x01, 0x97})
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBatch(data)
		if err != nil {
			return
		}
		again, err := EncodeBatch(b)
		if err != nil {
			t.Fatalf("a decoded batch does not encode: %v", err)
		}
		b2, err := DecodeBatch(again)
		if err != nil || len(b2.Cmds) != len(b.Cmds) || b2.Time != b.Time {
			t.Fatalf("a re-encoded batch does not decode the same: %v", err)
		}
	})
}

// fuzzCommandTypes maps each command type to a fresh value of its body.
var fuzzCommandTypes = map[CmdType]func() any{
	CmdInitCluster: func() any { return new(InitCluster) }, CmdInitRoot: func() any { return new(InitRoot) },
	CmdCreateSecret: func() any { return new(CreateSecret) }, CmdPutValue: func() any { return new(PutValue) },
	CmdUpdateSecret: func() any { return new(UpdateSecret) }, CmdDestroyVersion: func() any { return new(DestroyVersion) },
	CmdDeleteSecret: func() any { return new(DeleteSecret) }, CmdAuditOnly: func() any { return new(AuditOnly) },
	CmdCreateToken: func() any { return new(CreateToken) }, CmdRevokeToken: func() any { return new(RevokeToken) },
	CmdPutPolicy: func() any { return new(PutPolicy) }, CmdDeletePolicy: func() any { return new(DeletePolicy) },
	CmdRestoreState: func() any { return new(RestoreState) }, CmdCreateKey: func() any { return new(CreateKey) },
	CmdRotateKey: func() any { return new(RotateKey) }, CmdDisableKey: func() any { return new(DisableKey) },
	CmdEnableKey: func() any { return new(EnableKey) }, CmdScheduleKeyDeletion: func() any { return new(ScheduleKeyDeletion) },
	CmdCancelKeyDeletion: func() any { return new(CancelKeyDeletion) }, CmdDestroyKey: func() any { return new(DestroyKey) },
	CmdRebindSecretKey: func() any { return new(RebindSecretKey) }, CmdRewrapRootKey: func() any { return new(RewrapRootKey) },
}

// FuzzDecodeEnvelope: decoding an arbitrary command envelope, and an
// arbitrary body as each command type, returns an error or a value, never
// panics. (Apply still panics on a command it can't decode, by design: a
// node must crash rather than diverge; the decoders themselves must not.)
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range fuzzBatchSeeds(f) {
		b, err := DecodeBatch(s)
		if err != nil {
			f.Fatal(err)
		}
		for i := range b.Cmds {
			env, err := EncodeEnvelope(&b.Cmds[i])
			if err != nil {
				f.Fatal(err)
			}
			f.Add(env)
			f.Add(b.Cmds[i].Body)
		}
	}
	f.Add([]byte{0x97, 0x04, 0xc4, 0x00, 0xa0, 0xa0, 0xa0, 0xa0, 0xdd, 0x00, 0x00, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var env Envelope
		if err := msgpack.Unmarshal(data, &env); err == nil {
			if _, err := EncodeEnvelope(&env); err != nil {
				t.Fatalf("a decoded envelope does not encode: %v", err)
			}
		}
		// Command bodies are decoded by reflection: only once their
		// lengths are checked (msgpack would allocate what they announce).
		if checkMsgpackBounds(data) == nil {
			for _, mk := range fuzzCommandTypes {
				_ = msgpack.Unmarshal(data, mk())
			}
		}
	})
}
