package acl

import "slices"

// Kind says whether an action only reads the replicated state or changes it.
type Kind uint8

// Action kinds.
const (
	Read Kind = iota + 1
	Write
)

func (k Kind) String() string {
	switch k {
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return "unknown"
}

// Action is one row of the action table: everything the rest of Coffer
// needs to know about an action name. Routes, the evaluator, the built-in
// policies, the client and the docs are all checked against this table
// (one source of truth per fact).
type Action struct {
	// Name is the action as rules name it: the API action, or "sys.<name>"
	// for cluster actions.
	Name string
	// Route is the HTTP route under /v1/ ("getSecretValue", "sys/snapshot").
	Route string
	Kind  Kind
	// Admin actions need the admin policy by name, whatever other policies say.
	Admin bool
	// Public actions need no token (sys.init, sys.health).
	Public bool
	// Self actions describe only the caller's own token: any valid token may
	// call them, policies aside (whoami).
	Self bool
	// AccessPolicy actions are restricted by a secret's access policy
	// (every action on one secret but describing and listing).
	AccessPolicy bool
	// Event is the action's own audit event ("" = not audited).
	Event string
}

// table is the action table of SPEC §2 in the order of the docs.
var table = []Action{
	// Secrets.
	{Name: "createSecret", Kind: Write, AccessPolicy: true, Event: "secrets.create"},
	{Name: "describeSecret", Kind: Read, Event: "secrets.describe"},
	{Name: "listSecrets", Kind: Read, Event: "secrets.list"},
	{Name: "getSecretValue", Kind: Read, AccessPolicy: true, Event: "secrets.get_value"},
	{Name: "batchGetSecretValue", Kind: Read, AccessPolicy: true, Event: "secrets.get_value"},
	{Name: "putSecretValue", Kind: Write, AccessPolicy: true, Event: "secrets.put_value"},
	{Name: "generateSecret", Kind: Write, AccessPolicy: true, Event: "secrets.generate"},
	{Name: "updateSecret", Kind: Write, AccessPolicy: true, Event: "secrets.update"},
	{Name: "rebindSecretKey", Kind: Write, AccessPolicy: true, Event: "secrets.rebind_key"},
	{Name: "destroySecretVersion", Kind: Write, AccessPolicy: true, Event: "secrets.destroy_version"},
	{Name: "deleteSecret", Kind: Write, AccessPolicy: true, Event: "secrets.delete"},
	// KMS.
	{Name: "createKey", Kind: Write, Event: "kms.create_key"},
	{Name: "describeKey", Kind: Read, Event: "kms.describe_key"},
	{Name: "listKeys", Kind: Read, Event: "kms.list_keys"},
	{Name: "rotateKey", Kind: Write, Event: "kms.rotate_key"},
	{Name: "disableKey", Kind: Write, Event: "kms.disable_key"},
	{Name: "enableKey", Kind: Write, Event: "kms.enable_key"},
	{Name: "scheduleKeyDeletion", Kind: Write, Event: "kms.schedule_key_deletion"},
	{Name: "cancelKeyDeletion", Kind: Write, Event: "kms.cancel_key_deletion"},
	{Name: "listKeyBindings", Kind: Read, Event: "kms.list_key_bindings"},
	// Access control. Policy writes need admin: a policy is a grant, and a
	// non-admin who may write one could grant itself anything (SPEC §6).
	{Name: "createToken", Kind: Write, Event: "auth.create_token"},
	{Name: "revokeToken", Kind: Write, Event: "auth.revoke_token"},
	{Name: "listTokens", Kind: Read, Event: "auth.list_tokens"},
	{Name: "whoami", Kind: Read, Self: true, Event: "auth.whoami"},
	{Name: "putPolicy", Kind: Write, Admin: true, Event: "acl.put_policy"},
	{Name: "getPolicy", Kind: Read, Event: "acl.get_policy"},
	{Name: "listPolicies", Kind: Read, Event: "acl.list_policies"},
	{Name: "deletePolicy", Kind: Write, Admin: true, Event: "acl.delete_policy"},
	// Audit.
	{Name: "queryAudit", Kind: Read, Event: "audit.query"},
	{Name: "verifyAudit", Kind: Read, Event: "audit.verify"},
	// Cluster actions live under /v1/sys/; the "sys." prefix keeps them from
	// colliding with a future top-level action of the same name.
	{Name: "sys.init", Kind: Write, Public: true, Event: "sys.init"},
	{Name: "sys.health", Kind: Read, Public: true},
	{Name: "sys.cluster", Kind: Read, Admin: true, Event: "sys.cluster"},
	{Name: "sys.join", Kind: Write, Admin: true, Event: "sys.join"},
	{Name: "sys.removePeer", Kind: Write, Admin: true, Event: "sys.remove_peer"},
	{Name: "sys.transferLeadership", Kind: Write, Admin: true, Event: "sys.transfer_leadership"},
	{Name: "sys.snapshot", Kind: Read, Admin: true, Event: "sys.snapshot"},
	{Name: "sys.restore", Kind: Write, Admin: true, Event: "sys.restore"},
	{Name: "sys.rewrap", Kind: Write, Admin: true, Event: "sys.rewrap"},
}

// byName and byRoute index the table; both are built once and never change.
var byName, byRoute = func() (map[string]*Action, map[string]*Action) {
	n, r := make(map[string]*Action, len(table)), make(map[string]*Action, len(table))
	for i := range table {
		a := &table[i]
		a.Route = a.Name
		if rest, ok := cutSys(a.Name); ok {
			a.Route = "sys/" + rest
		}
		n[a.Name], r[a.Route] = a, a
	}
	return n, r
}()

func cutSys(name string) (string, bool) {
	if len(name) > 4 && name[:4] == "sys." {
		return name[4:], true
	}
	return "", false
}

// AllActions returns a copy of the action table.
func AllActions() []Action { return slices.Clone(table) }

// Lookup returns the table row of an action name ("sys.snapshot").
func Lookup(name string) (Action, bool) {
	a, ok := byName[name]
	if !ok {
		return Action{}, false
	}
	return *a, true
}

// LookupRoute returns the table row of an HTTP route under /v1/ ("sys/snapshot").
func LookupRoute(route string) (Action, bool) {
	a, ok := byRoute[route]
	if !ok {
		return Action{}, false
	}
	return *a, true
}

// Actions lists every action name a rule may name (besides "*"). Treat it
// as read-only; IsAction does not consult it.
var Actions = func() []string {
	out := make([]string, len(table))
	for i := range table {
		out[i] = table[i].Name
	}
	return out
}()

// IsAction reports whether name is an action of the table (case-sensitive;
// "*" is not an action but a wildcard).
func IsAction(name string) bool { _, ok := byName[name]; return ok }

// RequiresAdmin reports whether an action needs the admin policy by name.
// An unknown action is not admin-only here: the evaluator refuses it, as no
// rule but "*" can name it.
func RequiresAdmin(name string) bool {
	a, ok := byName[name]
	return ok && a.Admin
}

// HonoursAccessPolicy reports whether a secret's access policy restricts
// an action. An unknown action is restricted (fail closed).
func HonoursAccessPolicy(name string) bool {
	a, ok := byName[name]
	return !ok || a.AccessPolicy
}

// Names of the built-in policies.
const (
	PolicyAdmin             = "admin"
	PolicySecretsReadAccess = "secrets-read-access"
	PolicySecretsReader     = "secrets-reader"
	PolicySecretsWriter     = "secrets-writer"
	PolicyKMSAdmin          = "kms-admin"
)

// names returns the names of the table rows that keep says yes to.
func names(keep func(a *Action) bool) []string {
	var out []string
	for i := range table {
		if keep(&table[i]) {
			out = append(out, table[i].Name)
		}
	}
	return out
}

func isSecretEvent(a *Action) bool { return len(a.Event) > 8 && a.Event[:8] == "secrets." }
func isKMSEvent(a *Action) bool    { return len(a.Event) > 4 && a.Event[:4] == "kms." }

// BuiltinPolicies returns the built-in policies of SPEC §2 by name, derived
// from the action table. Each call returns fresh copies, so a caller can't
// alter what another one sees.
func BuiltinPolicies() map[string]*Policy {
	allowAll := func(name string, actions ...string) *Policy {
		return &Policy{
			Name:    name,
			Rules:   []Rule{{Effect: EffectAllow, Actions: actions, Paths: []string{"*"}}},
			BuiltIn: true,
		}
	}
	writer := names(func(a *Action) bool {
		return isSecretEvent(a) && a.Name != "deleteSecret" && a.Name != "destroySecretVersion"
	})
	reader := names(func(a *Action) bool { return isSecretEvent(a) && a.Kind == Read })
	readAccess := names(func(a *Action) bool {
		// Metadata and history, never values.
		return a.Name == "describeSecret" || a.Name == "listSecrets" || a.Name == "queryAudit"
	})
	return map[string]*Policy{
		PolicyAdmin:             allowAll(PolicyAdmin, "*"),
		PolicySecretsReadAccess: allowAll(PolicySecretsReadAccess, readAccess...),
		PolicySecretsReader:     allowAll(PolicySecretsReader, reader...),
		PolicySecretsWriter:     allowAll(PolicySecretsWriter, writer...),
		PolicyKMSAdmin:          allowAll(PolicyKMSAdmin, names(isKMSEvent)...),
	}
}

// IsBuiltin reports whether name is a built-in policy, which can't be
// changed or deleted.
func IsBuiltin(name string) bool {
	switch name {
	case PolicyAdmin, PolicySecretsReadAccess, PolicySecretsReader, PolicySecretsWriter, PolicyKMSAdmin:
		return true
	}
	return false
}
