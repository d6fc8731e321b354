package api

import (
	"context"

	"github.com/cofferhq/coffer/acl"
)

type handler = func(context.Context, *reqCtx, []byte) (any, error)

// routes maps every POST /v1/<route> to its handler. What an action is
// (its audit event, whether it needs a token) comes from the acl action
// table; a route missing from the table is a programming error caught at
// start and by TestRoutesMatchActionTable. sys/health, sys/snapshot and
// sys/restore are served by their own handlers (server.go).
func (s *Server) routes() map[string]action {
	handlers := map[string]handler{
		"createSecret":           s.createSecret,
		"describeSecret":         s.describeSecret,
		"listSecrets":            s.listSecrets,
		"getSecretValue":         s.getSecretValue,
		"batchGetSecretValue":    s.batchGetSecretValue,
		"putSecretValue":         s.putSecretValue,
		"generateSecret":         s.generateSecret,
		"updateSecret":           s.updateSecret,
		"destroySecretVersion":   s.destroySecretVersion,
		"deleteSecret":           s.deleteSecret,
		"createToken":            s.createToken,
		"revokeToken":            s.revokeToken,
		"listTokens":             s.listTokens,
		"whoami":                 s.whoami,
		"putPolicy":              s.putPolicy,
		"getPolicy":              s.getPolicy,
		"listPolicies":           s.listPolicies,
		"deletePolicy":           s.deletePolicy,
		"createKey":              s.createKey,
		"describeKey":            s.describeKey,
		"listKeys":               s.listKeys,
		"rotateKey":              s.rotateKey,
		"disableKey":             s.disableKey,
		"enableKey":              s.enableKey,
		"scheduleKeyDeletion":    s.scheduleKeyDeletion,
		"cancelKeyDeletion":      s.cancelKeyDeletion,
		"listKeyBindings":        s.listKeyBindings,
		"rebindSecretKey":        s.rebindSecretKey,
		"sys/rewrap":             s.rewrap,
		"queryAudit":             s.queryAudit,
		"verifyAudit":            s.verifyAudit,
		"sys/init":               s.initCluster,
		"sys/cluster":            s.cluster,
		"sys/join":               s.join,
		"sys/removePeer":         s.removePeer,
		"sys/transferLeadership": s.transferLeadership,
	}
	out := make(map[string]action, len(handlers))
	for route, h := range handlers {
		a, ok := acl.LookupRoute(route)
		if !ok {
			panic("api: route " + route + " is not in the acl action table")
		}
		out[route] = action{handle: h, event: a.Event, public: a.Public}
	}
	return out
}

// separateRoutes are the table's routes served outside routes(), by their
// own handlers in server.go.
var separateRoutes = []string{"sys/health", "sys/snapshot", "sys/restore"}
