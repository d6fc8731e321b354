package api

import "context"

// routes maps every POST /v1/<name> to its handler. Cluster actions live
// under sys/ and are named as the acl package names them.
func (s *Server) routes() map[string]action {
	a := func(h func(context.Context, *reqCtx, []byte) (any, error), event string) action {
		return action{handle: h, event: event}
	}
	return map[string]action{
		"createSecret":           a(s.createSecret, evCreate),
		"describeSecret":         a(s.describeSecret, evDescribe),
		"listSecrets":            a(s.listSecrets, evList),
		"getSecretValue":         a(s.getSecretValue, evGetValue),
		"batchGetSecretValue":    a(s.batchGetSecretValue, evGetValue),
		"putSecretValue":         a(s.putSecretValue, evPutValue),
		"generateSecret":         a(s.generateSecret, evGenerate),
		"updateSecret":           a(s.updateSecret, evUpdate),
		"destroySecretVersion":   a(s.destroySecretVersion, evDestroy),
		"deleteSecret":           a(s.deleteSecret, evDelete),
		"createToken":            a(s.createToken, evCreateToken),
		"revokeToken":            a(s.revokeToken, evRevokeToken),
		"listTokens":             a(s.listTokens, evListTokens),
		"whoami":                 a(s.whoami, evWhoami),
		"putPolicy":              a(s.putPolicy, evPutPolicy),
		"getPolicy":              a(s.getPolicy, evGetPolicy),
		"listPolicies":           a(s.listPolicies, evListPolicies),
		"deletePolicy":           a(s.deletePolicy, evDeletePolicy),
		"createKey":              a(s.createKey, evCreateKey),
		"describeKey":            a(s.describeKey, evDescribeKey),
		"listKeys":               a(s.listKeys, evListKeys),
		"rotateKey":              a(s.rotateKey, evRotateKey),
		"disableKey":             a(s.disableKey, evDisableKey),
		"enableKey":              a(s.enableKey, evEnableKey),
		"scheduleKeyDeletion":    a(s.scheduleKeyDeletion, evScheduleDelete),
		"cancelKeyDeletion":      a(s.cancelKeyDeletion, evCancelDelete),
		"listKeyBindings":        a(s.listKeyBindings, evListBindings),
		"rebindSecretKey":        a(s.rebindSecretKey, evRebindKey),
		"sys/rewrap":             a(s.rewrap, evRewrap),
		"queryAudit":             a(s.queryAudit, evQueryAudit),
		"verifyAudit":            a(s.verifyAudit, evVerifyAudit),
		"sys/init":               {handle: s.initCluster, event: evInit, public: true},
		"sys/cluster":            a(s.cluster, evCluster),
		"sys/join":               a(s.join, evJoin),
		"sys/removePeer":         a(s.removePeer, evRemovePeer),
		"sys/transferLeadership": a(s.transferLeadership, evTransferLeadership),
	}
}
