package api

import (
	"testing"

	"github.com/cofferhq/coffer/acl"
)

// TestRoutesMatchActionTable ties the server's routes to the acl action
// table: every table action is served, nothing else is, and each route's
// audit event and public flag are the table's.
func TestRoutesMatchActionTable(t *testing.T) {
	routes := (&Server{}).routes()
	served := map[string]bool{}
	for r, act := range routes {
		served[r] = true
		a, ok := acl.LookupRoute(r)
		if !ok {
			t.Errorf("route %s is not in the action table", r)
			continue
		}
		if act.event != a.Event || act.public != a.Public {
			t.Errorf("route %s: event %q public %v, table %q %v", r, act.event, act.public, a.Event, a.Public)
		}
	}
	for _, r := range separateRoutes {
		if served[r] {
			t.Errorf("%s is served twice", r)
		}
		served[r] = true
	}
	for _, a := range acl.AllActions() {
		if !served[a.Route] {
			t.Errorf("action %s (route %s) is in the table but not served", a.Name, a.Route)
		}
	}
	// The event names handlers write are the table's.
	for name, ev := range map[string]string{
		"createSecret": evCreate, "describeSecret": evDescribe, "listSecrets": evList, "getSecretValue": evGetValue,
		"batchGetSecretValue": evGetValue, "putSecretValue": evPutValue, "generateSecret": evGenerate, "updateSecret": evUpdate,
		"destroySecretVersion": evDestroy, "deleteSecret": evDelete, "rebindSecretKey": evRebindKey,
		"createKey": evCreateKey, "describeKey": evDescribeKey, "listKeys": evListKeys, "rotateKey": evRotateKey,
		"disableKey": evDisableKey, "enableKey": evEnableKey, "scheduleKeyDeletion": evScheduleDelete,
		"cancelKeyDeletion": evCancelDelete, "listKeyBindings": evListBindings,
		"createToken": evCreateToken, "revokeToken": evRevokeToken, "listTokens": evListTokens, "whoami": evWhoami,
		"putPolicy": evPutPolicy, "getPolicy": evGetPolicy, "listPolicies": evListPolicies, "deletePolicy": evDeletePolicy,
		"queryAudit": evQueryAudit, "verifyAudit": evVerifyAudit,
		"sys.init": evInit, "sys.cluster": evCluster, "sys.join": evJoin, "sys.removePeer": evRemovePeer,
		"sys.transferLeadership": evTransferLeadership, "sys.snapshot": evSnapshot, "sys.restore": evRestore, "sys.rewrap": evRewrap,
	} {
		a, ok := acl.Lookup(name)
		if !ok || a.Event != ev {
			t.Errorf("%s: handler writes event %q, table says %q", name, ev, a.Event)
		}
	}
}
