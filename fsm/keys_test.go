package fsm

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/errs"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// keyHarness applies commands to a fresh FSM at a controllable time. The
// "wrapped" blobs are markers: Apply never looks inside them.
type keyHarness struct {
	t   *testing.T
	f   *FSM
	idx uint64
	now time.Time
}

func newKeyHarness(t *testing.T) *keyHarness {
	t.Helper()
	h := &keyHarness{t: t, f: New(audit.NewMemoryStore(), nil, hclog.NewNullLogger()), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h.ok(h.apply(CmdInitCluster, &InitCluster{ClusterID: "c1", DefaultKey: blob("default", 1), RootFingerprint: "root1"}))
	return h
}

func blob(name string, v uint32) []byte { return []byte(fmt.Sprintf("WRAPPED<%s/%d>", name, v)) }

func (h *keyHarness) apply(typ CmdType, body any) Result {
	h.t.Helper()
	env, err := NewEnvelope(typ, body, "", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	data, err := EncodeBatch(&Batch{Time: h.now.UnixNano(), Cmds: []Envelope{env}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.idx++
	return h.f.Apply(&raft.Log{Index: h.idx, Data: data}).([]Result)[0]
}

func (h *keyHarness) ok(r Result) Result {
	h.t.Helper()
	if r.Err != nil {
		h.t.Fatalf("unexpected error: %v", r.Err)
	}
	return r
}

func (h *keyHarness) code(r Result, want errs.Code) {
	h.t.Helper()
	if r.Err == nil || r.Err.Code != want {
		h.t.Fatalf("got %v, want %s", r.Err, want)
	}
}

func (h *keyHarness) key(name string) *Key {
	h.t.Helper()
	k, ok := h.f.State().Key(name)
	if !ok {
		h.t.Fatalf("key %s missing", name)
	}
	return k
}

func (h *keyHarness) createKey(name string) {
	h.t.Helper()
	h.ok(h.apply(CmdCreateKey, &CreateKey{Name: name, Wrapped: blob(name, 1)}))
}

// createSecret creates a secret with n versions sealed under key's version kv.
func (h *keyHarness) createSecret(path, key string, kv uint32, n int) {
	h.t.Helper()
	sv := func(i int) SealedValue {
		return SealedValue{Ciphertext: []byte("ct"), WrappedDEK: []byte(fmt.Sprintf("dek%d", i)), Size: 2, KMSKey: key, KMSKeyVersion: kv}
	}
	first := sv(1)
	h.ok(h.apply(CmdCreateSecret, &CreateSecret{Path: path, UID: "uid-" + path, KMSKey: key, Value: &first, CreatedBy: "t"}))
	for i := 2; i <= n; i++ {
		h.ok(h.apply(CmdPutValue, &PutValue{Path: path, UID: "uid-" + path, Value: sv(i), Origin: "put", CreatedBy: "t"}))
	}
}

// toState brings key k (freshly created) into state st.
func (h *keyHarness) toState(k, st string) {
	h.t.Helper()
	h.createKey(k)
	switch st {
	case KeyEnabled:
	case KeyDisabled:
		h.ok(h.apply(CmdDisableKey, &DisableKey{Name: k}))
	case KeyPendingDeletion:
		h.ok(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: k, PendingDays: 7}))
	case KeyDestroyed:
		h.ok(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: k, PendingDays: 7}))
		h.now = h.now.Add(7 * 24 * time.Hour)
		h.ok(h.apply(CmdDestroyKey, &DestroyKey{Name: k}))
	default:
		h.t.Fatalf("unknown state %s", st)
	}
	if got := h.key(k).State; got != st {
		h.t.Fatalf("setup: key is %s, want %s", got, st)
	}
}

func TestKeyStateTransitions(t *testing.T) {
	type op struct {
		name  string
		typ   CmdType
		body  func(k string) any
		later time.Duration // advance the clock first
	}
	ops := map[string]op{
		"disable":         {typ: CmdDisableKey, body: func(k string) any { return &DisableKey{Name: k} }},
		"enable":          {typ: CmdEnableKey, body: func(k string) any { return &EnableKey{Name: k} }},
		"rotate":          {typ: CmdRotateKey, body: func(k string) any { return &RotateKey{Name: k, Version: 2, Wrapped: blob(k, 2)} }},
		"schedule":        {typ: CmdScheduleKeyDeletion, body: func(k string) any { return &ScheduleKeyDeletion{Name: k, PendingDays: 30} }},
		"cancel":          {typ: CmdCancelKeyDeletion, body: func(k string) any { return &CancelKeyDeletion{Name: k} }},
		"destroy-early":   {typ: CmdDestroyKey, body: func(k string) any { return &DestroyKey{Name: k} }, later: 6 * 24 * time.Hour},
		"destroy-on-time": {typ: CmdDestroyKey, body: func(k string) any { return &DestroyKey{Name: k} }, later: 7 * 24 * time.Hour},
	}
	const fp = errs.FailedPrecondition
	tests := []struct {
		from, op string
		want     errs.Code // "" = allowed
		to       string
	}{
		{KeyEnabled, "disable", "", KeyDisabled},
		{KeyEnabled, "enable", "", KeyEnabled}, // idempotent
		{KeyEnabled, "rotate", "", KeyEnabled},
		{KeyEnabled, "schedule", "", KeyPendingDeletion},
		{KeyEnabled, "cancel", fp, KeyEnabled},
		{KeyEnabled, "destroy-on-time", fp, KeyEnabled},

		{KeyDisabled, "disable", "", KeyDisabled}, // idempotent
		{KeyDisabled, "enable", "", KeyEnabled},
		{KeyDisabled, "rotate", fp, KeyDisabled},
		{KeyDisabled, "schedule", "", KeyPendingDeletion},
		{KeyDisabled, "cancel", fp, KeyDisabled},
		{KeyDisabled, "destroy-on-time", fp, KeyDisabled},

		{KeyPendingDeletion, "disable", fp, KeyPendingDeletion},
		{KeyPendingDeletion, "enable", fp, KeyPendingDeletion},
		{KeyPendingDeletion, "rotate", fp, KeyPendingDeletion},
		{KeyPendingDeletion, "schedule", fp, KeyPendingDeletion},
		{KeyPendingDeletion, "cancel", "", KeyDisabled}, // as AWS KMS does
		{KeyPendingDeletion, "destroy-early", fp, KeyPendingDeletion},
		{KeyPendingDeletion, "destroy-on-time", "", KeyDestroyed},

		{KeyDestroyed, "disable", fp, KeyDestroyed},
		{KeyDestroyed, "enable", fp, KeyDestroyed},
		{KeyDestroyed, "rotate", fp, KeyDestroyed},
		{KeyDestroyed, "schedule", fp, KeyDestroyed},
		{KeyDestroyed, "cancel", fp, KeyDestroyed},
		{KeyDestroyed, "destroy-on-time", fp, KeyDestroyed},
	}
	for _, tc := range tests {
		t.Run(tc.from+"/"+tc.op, func(t *testing.T) {
			h := newKeyHarness(t)
			h.toState("k", tc.from)
			before := h.key("k")
			o := ops[tc.op]
			h.now = h.now.Add(o.later)
			r := h.apply(o.typ, o.body("k"))
			if tc.want == "" {
				h.ok(r)
				if r.Key == nil || r.Key.State != tc.to || r.Key.Name != "k" {
					t.Fatalf("result key %+v, want state %s", r.Key, tc.to)
				}
			} else {
				h.code(r, tc.want)
				if !strings.Contains(r.Err.Message, `"k"`) {
					t.Errorf("error %q does not name the key", r.Err.Message)
				}
			}
			after := h.key("k")
			if after.State != tc.to {
				t.Fatalf("state %s, want %s", after.State, tc.to)
			}
			if tc.want != "" && after != before {
				t.Fatalf("a refused command changed the key")
			}
		})
	}
}

func TestKeyCommandsOnUnknownKey(t *testing.T) {
	h := newKeyHarness(t)
	for typ, body := range map[CmdType]any{
		CmdRotateKey:           &RotateKey{Name: "nope", Version: 2, Wrapped: blob("nope", 2)},
		CmdDisableKey:          &DisableKey{Name: "nope"},
		CmdEnableKey:           &EnableKey{Name: "nope"},
		CmdScheduleKeyDeletion: &ScheduleKeyDeletion{Name: "nope", PendingDays: 7},
		CmdCancelKeyDeletion:   &CancelKeyDeletion{Name: "nope"},
		CmdDestroyKey:          &DestroyKey{Name: "nope"},
	} {
		h.code(h.apply(typ, body), errs.NotFound)
	}
}

func TestCreateAndRotateKey(t *testing.T) {
	h := newKeyHarness(t)
	h.now = h.now.Add(time.Hour)
	r := h.ok(h.apply(CmdCreateKey, &CreateKey{Name: "k", Description: "payments", Wrapped: blob("k", 1)}))
	if r.Key.State != KeyEnabled || r.Key.CurrentVersion != 1 || len(r.Key.Versions) != 1 || r.Key.Description != "payments" || !r.Key.CreatedAt.Equal(h.now) {
		t.Fatalf("created %+v", r.Key)
	}
	h.code(h.apply(CmdCreateKey, &CreateKey{Name: "k", Wrapped: blob("k", 1)}), errs.AlreadyExists)
	h.code(h.apply(CmdCreateKey, &CreateKey{Name: "default", Wrapped: blob("default", 1)}), errs.AlreadyExists)

	r = h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k", Version: 2, Wrapped: blob("k", 2)}))
	if r.Key.CurrentVersion != 2 || r.Key.Versions[1].Version != 2 || r.Key.Versions[1].State != "enabled" {
		t.Fatalf("rotated %+v", r.Key)
	}
	// The version number is bound into the wrapping: a stale one is refused.
	h.code(h.apply(CmdRotateKey, &RotateKey{Name: "k", Version: 2, Wrapped: blob("k", 2)}), errs.FailedPrecondition)
	if k := h.key("k"); len(k.Versions) != 2 || !bytes.Equal(k.Versions[0].Wrapped, blob("k", 1)) {
		t.Fatalf("versions %+v", k.Versions)
	}
}

func TestScheduleKeyDeletionRules(t *testing.T) {
	h := newKeyHarness(t)
	h.code(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "default", PendingDays: 7, Force: true}), errs.FailedPrecondition)
	h.createKey("k")
	for _, d := range []int{0, 6, 31, -1} {
		h.code(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k", PendingDays: d}), errs.InvalidArgument)
	}
	h.createSecret("/a/1", "k", 1, 1)
	h.createSecret("/a/2", "k", 1, 2)
	r := h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k", PendingDays: 7})
	h.code(r, errs.FailedPrecondition)
	if !strings.Contains(r.Err.Message, "2 secret") {
		t.Errorf("message %q does not give the bound count", r.Err.Message)
	}
	r = h.ok(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k", PendingDays: 10, Force: true}))
	want := h.now.Add(10 * 24 * time.Hour)
	if r.Key.DeletionDate == nil || !r.Key.DeletionDate.Equal(want) {
		t.Fatalf("deletion date %v, want %v", r.Key.DeletionDate, want)
	}
	// Pending: the secrets are unusable.
	h.code(h.apply(CmdPutValue, &PutValue{Path: "/a/1", UID: "uid-/a/1", Value: SealedValue{KMSKey: "k", KMSKeyVersion: 1, WrappedDEK: []byte("x")}, Origin: "put"}), errs.FailedPrecondition)
	// Cancel: back to disabled with no date.
	r = h.ok(h.apply(CmdCancelKeyDeletion, &CancelKeyDeletion{Name: "k"}))
	if r.Key.State != KeyDisabled || r.Key.DeletionDate != nil {
		t.Fatalf("after cancel %+v", r.Key)
	}
}

func TestDestroyKeyErasesMaterialFromStateAndSnapshot(t *testing.T) {
	h := newKeyHarness(t)
	h.createKey("k")
	h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k", Version: 2, Wrapped: blob("k", 2)}))
	h.createSecret("/s", "k", 2, 1)
	h.ok(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "k", PendingDays: 7, Force: true}))
	h.now = h.now.Add(7*24*time.Hour - time.Nanosecond)
	h.code(h.apply(CmdDestroyKey, &DestroyKey{Name: "k"}), errs.FailedPrecondition)
	h.now = h.now.Add(time.Nanosecond)
	r := h.ok(h.apply(CmdDestroyKey, &DestroyKey{Name: "k"}))
	if r.Key.State != KeyDestroyed || len(r.Key.Versions) != 2 || r.Key.Versions[0].State != "destroyed" || r.Key.Versions[1].State != "destroyed" {
		t.Fatalf("destroyed %+v", r.Key)
	}
	k := h.key("k")
	for _, v := range k.Versions {
		if v.Wrapped != nil || v.CreatedAt == 0 {
			t.Fatalf("version %d: material %q kept or metadata lost", v.Version, v.Wrapped)
		}
	}
	if k.Bound != 1 {
		t.Errorf("bound %d, want 1 (the forced secret stays bound)", k.Bound)
	}
	var buf bytes.Buffer
	if err := WriteState(&buf, h.f.State()); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte("WRAPPED<k/")) {
		t.Fatal("the destroyed key's material is still in the snapshot")
	}
	if !bytes.Contains(buf.Bytes(), []byte("WRAPPED<default/1>")) {
		t.Fatal("snapshot lost the default key (marker check is broken)")
	}
	st, err := ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	rk, _ := st.Key("k")
	if rk.State != KeyDestroyed || len(rk.Versions) != 2 || rk.Versions[1].Wrapped != nil || rk.Bound != 1 {
		t.Fatalf("restored %+v", rk)
	}
	// The secret is unusable: its key is destroyed.
	h.code(h.apply(CmdPutValue, &PutValue{Path: "/s", UID: "uid-/s", Value: SealedValue{KMSKey: "k", KMSKeyVersion: 2, WrappedDEK: []byte("x")}, Origin: "put"}), errs.FailedPrecondition)
}

func TestBindingsIndex(t *testing.T) {
	h := newKeyHarness(t)
	h.createKey("k")
	h.createKey("k-2") // shares a prefix with "k": must not leak into its bindings
	for i := 0; i < 5; i++ {
		h.createSecret(fmt.Sprintf("/app/s%d", i), "k", 1, 1)
	}
	h.createSecret("/app/other", "k-2", 1, 1)
	h.createSecret("/app/dflt", "default", 1, 1)
	// generateSecret with create: true binds too.
	h.ok(h.apply(CmdPutValue, &PutValue{Path: "/gen", UID: "u-gen", Create: true, Origin: "generate",
		Value: SealedValue{KMSKey: "k", KMSKeyVersion: 1, WrappedDEK: []byte("d"), Size: 1}}))

	st := h.f.State()
	if b := h.key("k").Bound; b != 6 {
		t.Fatalf("bound %d, want 6", b)
	}
	var all []string
	tok := ""
	for pages := 0; ; pages++ {
		paths, next, err := st.KeyBindings("k", 4, tok)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, paths...)
		if next == "" {
			if pages != 1 {
				t.Errorf("%d pages, want 2", pages+1)
			}
			break
		}
		tok = next
	}
	want := []string{"/app/s0", "/app/s1", "/app/s2", "/app/s3", "/app/s4", "/gen"}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("bindings %v, want %v", all, want)
	}
	if _, _, err := st.KeyBindings("k", 10, "!!"); errs.CodeOf(err) != errs.InvalidArgument {
		t.Fatalf("bad token: %v", err)
	}

	h.ok(h.apply(CmdDeleteSecret, &DeleteSecret{Path: "/app/s0"}))
	if b := h.key("k").Bound; b != 5 {
		t.Fatalf("bound after delete %d, want 5", b)
	}
	if st := h.f.State(); st.InactiveBound() != 0 {
		t.Fatalf("inactive %d", st.InactiveBound())
	}
	h.ok(h.apply(CmdDisableKey, &DisableKey{Name: "k"}))
	h.ok(h.apply(CmdDisableKey, &DisableKey{Name: "k-2"}))
	if n := h.f.State().InactiveBound(); n != 6 {
		t.Fatalf("inactive %d, want 6", n)
	}

	// A snapshot round trip rebuilds the derived index and counts.
	var buf bytes.Buffer
	if err := WriteState(&buf, h.f.State()); err != nil {
		t.Fatal(err)
	}
	rst, err := ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"k", "k-2", "default"} {
		a, _ := h.f.State().Key(name)
		b, _ := rst.Key(name)
		if a.Bound != b.Bound {
			t.Errorf("%s: bound %d after restore, want %d", name, b.Bound, a.Bound)
		}
	}
	p1, _, _ := h.f.State().KeyBindings("k", 100, "")
	p2, _, _ := rst.KeyBindings("k", 100, "")
	if fmt.Sprint(p1) != fmt.Sprint(p2) || rst.InactiveBound() != 6 {
		t.Fatalf("restored bindings %v (inactive %d), want %v", p2, rst.InactiveBound(), p1)
	}
}

func rebindFor(h *keyHarness, path, to string, toVer uint32) *RebindSecretKey {
	s, _ := h.f.State().Secret(path)
	c := &RebindSecretKey{Path: path, UID: s.UID, FromKey: s.KMSKey, ToKey: to, ToKeyVersion: toVer}
	for _, v := range s.Versions {
		if !v.Destroyed {
			c.Versions = append(c.Versions, RewrappedDEK{Version: v.Version, FromKey: v.KMSKey, FromKeyVersion: v.KMSKeyVersion, WrappedDEK: []byte(fmt.Sprintf("new-dek%d", v.Version))})
		}
	}
	return c
}

func TestRebindSecretKey(t *testing.T) {
	h := newKeyHarness(t)
	h.createKey("k2")
	h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k2", Version: 2, Wrapped: blob("k2", 2)}))
	h.createSecret("/s", "default", 1, 3)
	h.ok(h.apply(CmdDestroyVersion, &DestroyVersion{Path: "/s", Version: 1}))

	// Refusals leave everything as it was.
	stale := rebindFor(h, "/s", "k2", 2)
	stale.Versions = stale.Versions[:1] // a version added meanwhile
	bad := map[string]struct {
		c    *RebindSecretKey
		code errs.Code
	}{
		"missing version": {stale, errs.FailedPrecondition},
		"uid":             {func() *RebindSecretKey { c := rebindFor(h, "/s", "k2", 2); c.UID = "other"; return c }(), errs.FailedPrecondition},
		"from key":        {func() *RebindSecretKey { c := rebindFor(h, "/s", "k2", 2); c.FromKey = "k2"; return c }(), errs.FailedPrecondition},
		"version moved":   {func() *RebindSecretKey { c := rebindFor(h, "/s", "k2", 2); c.Versions[0].FromKeyVersion = 9; return c }(), errs.FailedPrecondition},
		"extra version": {func() *RebindSecretKey {
			c := rebindFor(h, "/s", "k2", 2)
			c.Versions = append(c.Versions, RewrappedDEK{Version: 4, FromKey: "default", FromKeyVersion: 1})
			return c
		}(), errs.FailedPrecondition},
		"target version": {rebindFor(h, "/s", "k2", 3), errs.FailedPrecondition},
		"unknown target": {rebindFor(h, "/s", "nope", 1), errs.NotFound},
		"unknown secret": {&RebindSecretKey{Path: "/nope", ToKey: "k2", ToKeyVersion: 1}, errs.NotFound},
		"destroyed resur": {func() *RebindSecretKey {
			c := rebindFor(h, "/s", "k2", 2)
			c.Versions = append([]RewrappedDEK{{Version: 1, FromKey: "default", FromKeyVersion: 1}}, c.Versions...)
			return c
		}(), errs.FailedPrecondition},
	}
	for name, b := range bad {
		r := h.apply(CmdRebindSecretKey, b.c)
		if r.Err == nil || r.Err.Code != b.code {
			t.Fatalf("%s: got %v, want %s", name, r.Err, b.code)
		}
		if s, _ := h.f.State().Secret("/s"); s.KMSKey != "default" {
			t.Fatalf("%s: a refused rebind changed the secret", name)
		}
	}
	if k, _ := h.f.State().Key("default"); k.Bound != 1 {
		t.Fatalf("bound changed by refused rebinds")
	}

	// Both keys must be enabled.
	h.ok(h.apply(CmdDisableKey, &DisableKey{Name: "k2"}))
	r := h.apply(CmdRebindSecretKey, rebindFor(h, "/s", "k2", 2))
	h.code(r, errs.FailedPrecondition)
	if !strings.Contains(r.Err.Message, `"k2" is disabled`) {
		t.Errorf("message %q", r.Err.Message)
	}
	h.ok(h.apply(CmdEnableKey, &EnableKey{Name: "k2"}))
	h.ok(h.apply(CmdDisableKey, &DisableKey{Name: "default"}))
	h.code(h.apply(CmdRebindSecretKey, rebindFor(h, "/s", "k2", 2)), errs.FailedPrecondition)
	h.ok(h.apply(CmdEnableKey, &EnableKey{Name: "default"}))

	h.now = h.now.Add(time.Minute)
	r = h.ok(h.apply(CmdRebindSecretKey, rebindFor(h, "/s", "k2", 2)))
	if r.Secret == nil || r.Secret.KMSKey != "k2" || !r.Secret.UpdatedAt.Equal(h.now) {
		t.Fatalf("result %+v", r.Secret)
	}
	s, _ := h.f.State().Secret("/s")
	if v := s.Versions[0]; v.KMSKey != "default" || v.KMSKeyVersion != 1 || v.WrappedDEK != nil {
		t.Fatalf("destroyed version changed: %+v", v)
	}
	for _, v := range s.Versions[1:] {
		if v.KMSKey != "k2" || v.KMSKeyVersion != 2 || string(v.WrappedDEK) != fmt.Sprintf("new-dek%d", v.Version) || string(v.Ciphertext) != "ct" {
			t.Fatalf("version %d: %+v", v.Version, v)
		}
	}
	st := h.f.State()
	if d, _ := st.Key("default"); d.Bound != 0 {
		t.Errorf("default bound %d", d.Bound)
	}
	if k, _ := st.Key("k2"); k.Bound != 1 {
		t.Errorf("k2 bound %d", k.Bound)
	}
	if p, _, _ := st.KeyBindings("k2", 10, ""); fmt.Sprint(p) != "[/s]" {
		t.Errorf("k2 bindings %v", p)
	}
	if p, _, _ := st.KeyBindings("default", 10, ""); len(p) != 0 {
		t.Errorf("default bindings %v", p)
	}
	// Now the old key can be scheduled for deletion without force.
	h.createKey("old")
	h.createSecret("/t", "old", 1, 1)
	h.code(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "old", PendingDays: 7}), errs.FailedPrecondition)
	h.ok(h.apply(CmdRebindSecretKey, rebindFor(h, "/t", "k2", 2)))
	h.ok(h.apply(CmdScheduleKeyDeletion, &ScheduleKeyDeletion{Name: "old", PendingDays: 7}))

	// Rebinding to the same key moves the DEKs to its current version.
	h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k2", Version: 3, Wrapped: blob("k2", 3)}))
	h.ok(h.apply(CmdRebindSecretKey, rebindFor(h, "/s", "k2", 3)))
	s, _ = h.f.State().Secret("/s")
	if s.Versions[2].KMSKeyVersion != 3 {
		t.Fatalf("same-key rebind: %+v", s.Versions[2])
	}
	if k, _ := h.f.State().Key("k2"); k.Bound != 2 {
		t.Errorf("k2 bound %d after same-key rebind, want 2", k.Bound)
	}
}

func TestRewrapRootKey(t *testing.T) {
	h := newKeyHarness(t)
	h.createKey("k")
	h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k", Version: 2, Wrapped: blob("k", 2)}))
	h.toState("gone", KeyDestroyed)

	full := func() *RewrapRootKey {
		c := &RewrapRootKey{Fingerprint: "root2"}
		h.f.State().Keys.Root().Walk(func(_ []byte, k *Key) bool {
			rk := RewrappedKey{Name: k.Name}
			for _, v := range k.Versions {
				rk.Wrapped = append(rk.Wrapped, []byte(fmt.Sprintf("NEW<%s/%d>", k.Name, v.Version)))
			}
			c.Keys = append(c.Keys, rk)
			return false
		})
		return c
	}
	// Refusals.
	missing := full()
	missing.Keys = missing.Keys[1:]
	h.code(h.apply(CmdRewrapRootKey, missing), errs.FailedPrecondition)
	rotated := full()
	h.ok(h.apply(CmdRotateKey, &RotateKey{Name: "k", Version: 3, Wrapped: blob("k", 3)}))
	h.code(h.apply(CmdRewrapRootKey, rotated), errs.FailedPrecondition)
	hole := full()
	for i := range hole.Keys {
		if hole.Keys[i].Name == "k" {
			hole.Keys[i].Wrapped[0] = nil
		}
	}
	h.code(h.apply(CmdRewrapRootKey, hole), errs.FailedPrecondition)
	if h.f.State().RootFingerprint != "root1" || !bytes.Equal(h.key("k").Versions[0].Wrapped, blob("k", 1)) {
		t.Fatal("a refused rewrap changed the state")
	}

	h.ok(h.apply(CmdRewrapRootKey, full()))
	st := h.f.State()
	if st.RootFingerprint != "root2" {
		t.Errorf("fingerprint %q", st.RootFingerprint)
	}
	for _, name := range []string{"default", "k"} {
		k, _ := st.Key(name)
		for _, v := range k.Versions {
			if want := fmt.Sprintf("NEW<%s/%d>", name, v.Version); string(v.Wrapped) != want {
				t.Errorf("%s v%d: %q, want %q", name, v.Version, v.Wrapped, want)
			}
		}
	}
	// Destroyed material is never resurrected, even if the command has some.
	if g, _ := st.Key("gone"); g.Versions[0].Wrapped != nil {
		t.Fatalf("destroyed key got material back: %q", g.Versions[0].Wrapped)
	}
}
