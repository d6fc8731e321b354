package acl

import "slices"

// The action groups of SPEC §2. They are kept apart so the built-in policies
// are defined by group and can't drift from the action list.
var (
	secretActions = []string{
		"createSecret", "describeSecret", "listSecrets", "getSecretValue",
		"batchGetSecretValue", "putSecretValue", "generateSecret",
		"updateSecret", "rebindSecretKey", "destroySecretVersion", "deleteSecret",
	}
	kmsActions = []string{
		"createKey", "describeKey", "listKeys", "rotateKey", "disableKey",
		"enableKey", "scheduleKeyDeletion", "cancelKeyDeletion", "listKeyBindings",
	}
	accessActions = []string{
		"createToken", "revokeToken", "listTokens", "whoami",
		"putPolicy", "getPolicy", "listPolicies", "deletePolicy",
	}
	auditActions = []string{"queryAudit", "verifyAudit"}
	// Cluster actions live under /v1/sys/; the "sys." prefix keeps them from
	// colliding with a future top-level action of the same name.
	sysActions = []string{
		"sys.init", "sys.health", "sys.cluster", "sys.join", "sys.removePeer",
		"sys.transferLeadership", "sys.snapshot", "sys.restore",
	}
)

// Actions lists every action name a rule may name (besides "*"): the secret,
// KMS, access-control and audit actions of SPEC §2 and the cluster actions
// as "sys.<name>". Treat it as read-only; IsAction does not consult it.
var Actions = slices.Concat(secretActions, kmsActions, accessActions, auditActions, sysActions)

// actionSet is built from the private groups, not from Actions, so a caller
// that mutates the exported slice can't change what validation accepts.
var actionSet = func() map[string]bool {
	m := make(map[string]bool)
	for _, g := range [][]string{secretActions, kmsActions, accessActions, auditActions, sysActions} {
		for _, a := range g {
			m[a] = true
		}
	}
	return m
}()

// IsAction reports whether name is an action of SPEC §2 (case-sensitive;
// "*" is not an action but a wildcard).
func IsAction(name string) bool { return actionSet[name] }

// Names of the built-in policies.
const (
	PolicyAdmin             = "admin"
	PolicySecretsReadAccess = "secrets-read-access"
	PolicySecretsReader     = "secrets-reader"
	PolicySecretsWriter     = "secrets-writer"
	PolicyKMSAdmin          = "kms-admin"
)

// BuiltinPolicies returns the built-in policies of SPEC §2 by name. Each call
// returns fresh copies, so a caller can't alter what another one sees.
func BuiltinPolicies() map[string]*Policy {
	allowAll := func(name string, actions ...string) *Policy {
		return &Policy{
			Name:    name,
			Rules:   []Rule{{Effect: EffectAllow, Actions: actions, Paths: []string{"*"}}},
			BuiltIn: true,
		}
	}
	writer := slices.DeleteFunc(slices.Clone(secretActions), func(a string) bool {
		return a == "deleteSecret" || a == "destroySecretVersion"
	})
	return map[string]*Policy{
		PolicyAdmin: allowAll(PolicyAdmin, "*"),
		// Metadata and history, never values.
		PolicySecretsReadAccess: allowAll(PolicySecretsReadAccess, "describeSecret", "listSecrets", "queryAudit"),
		PolicySecretsReader:     allowAll(PolicySecretsReader, "getSecretValue", "batchGetSecretValue", "describeSecret", "listSecrets"),
		PolicySecretsWriter:     allowAll(PolicySecretsWriter, writer...),
		PolicyKMSAdmin:          allowAll(PolicyKMSAdmin, slices.Clone(kmsActions)...),
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
