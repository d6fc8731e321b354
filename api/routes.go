package api

import "context"

// routes maps every POST /v1/<name> to its handler. Cluster actions live
// under sys/ and are named as the acl package names them.
func (s *Server) routes() map[string]action {
	a := func(h func(context.Context, *reqCtx, []byte) (any, error)) action { return action{handle: h} }
	return map[string]action{
		"createSecret":           a(s.createSecret),
		"describeSecret":         a(s.describeSecret),
		"listSecrets":            a(s.listSecrets),
		"getSecretValue":         a(s.getSecretValue),
		"batchGetSecretValue":    a(s.batchGetSecretValue),
		"putSecretValue":         a(s.putSecretValue),
		"generateSecret":         a(s.generateSecret),
		"updateSecret":           a(s.updateSecret),
		"destroySecretVersion":   a(s.destroySecretVersion),
		"deleteSecret":           a(s.deleteSecret),
		"createToken":            a(s.createToken),
		"revokeToken":            a(s.revokeToken),
		"listTokens":             a(s.listTokens),
		"whoami":                 a(s.whoami),
		"putPolicy":              a(s.putPolicy),
		"getPolicy":              a(s.getPolicy),
		"listPolicies":           a(s.listPolicies),
		"deletePolicy":           a(s.deletePolicy),
		"createKey":              a(s.createKey),
		"describeKey":            a(s.describeKey),
		"listKeys":               a(s.listKeys),
		"rotateKey":              a(s.rotateKey),
		"disableKey":             a(s.disableKey),
		"enableKey":              a(s.enableKey),
		"scheduleKeyDeletion":    a(s.scheduleKeyDeletion),
		"cancelKeyDeletion":      a(s.cancelKeyDeletion),
		"listKeyBindings":        a(s.listKeyBindings),
		"rebindSecretKey":        a(s.rebindSecretKey),
		"sys/rewrap":             a(s.rewrap),
		"queryAudit":             a(s.queryAudit),
		"verifyAudit":            a(s.verifyAudit),
		"sys/init":               {handle: s.initCluster, public: true},
		"sys/cluster":            a(s.cluster),
		"sys/join":               a(s.join),
		"sys/removePeer":         a(s.removePeer),
		"sys/transferLeadership": a(s.transferLeadership),
	}
}
