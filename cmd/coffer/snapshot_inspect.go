package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/cofferhq/coffer/node"
)

// snapshotInspect is `coffer snapshot inspect FILE`: it checks the file's
// checksum and prints its header, without contacting a node.
func snapshotInspect(a *app, args []string) int {
	c := a.newCmd("snapshot inspect", "FILE [--json]",
		"Checks a snapshot file's checksum and prints its header: cluster, Raft index and term, size, counts of\nsecrets, versions, keys, tokens and audit entries. A corrupt file exits 1.")
	asJSON := c.fs.Bool("json", false, "print the header as JSON")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return c.fail(err)
	}
	info, _, err := node.ParseSnapshot(data)
	if err != nil {
		return c.fail(fmt.Errorf("%s: %w", pos[0], err))
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(info)
		return 0
	}
	kv(a.stdout,
		"File", pos[0],
		"Cluster", info.ClusterID,
		"Index", fmt.Sprint(info.Index),
		"Term", fmt.Sprint(info.Term),
		"Created", fmtTime(info.CreatedAt)+" by "+info.NodeID,
		"Size", fmt.Sprintf("%d bytes", info.Size),
		"Secrets", fmt.Sprintf("%d (%d versions)", info.Secrets, info.Versions),
		"KMS keys", fmt.Sprint(info.Keys),
		"Tokens", fmt.Sprint(info.Tokens),
		"Audit entries", fmt.Sprintf("%d (chain head seq)", info.AuditSeq),
		"Checksum", info.Checksum+" (verified)")
	return 0
}
