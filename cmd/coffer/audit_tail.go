package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/apitypes"
)

// auditTail is `coffer audit tail`: it prints new audit entries as they
// are committed, polling the node (JSON lines with --json).
func auditTail(a *app, args []string) int {
	c := a.newCmd("audit tail", "[flags]",
		"Follows the audit trail: prints entries as they are committed, until interrupted. The tail's own\nqueryAudit entries are not shown.").withConn()
	interval := c.fs.Duration("interval", time.Second, "how often to poll")
	var actions listFlag
	c.fs.Var(&actions, "action", "only this event `NAME` (repeatable)")
	pathPrefix := c.fs.String("path-prefix", "", "only entries whose path starts with this")
	var since timeFlag
	c.fs.Var(&since, "since", "start at `TIME` (RFC 3339 or a duration ago; default: now)")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	me, err := cl.Whoami(a.ctx, &apitypes.WhoamiRequest{})
	if err != nil {
		return c.fail(err)
	}
	from := time.Now().UTC()
	if since.t != nil {
		from = *since.t
	}
	var lastSeq uint64
	enc := json.NewEncoder(a.stdout)
	for {
		req := &apitypes.QueryAuditRequest{Since: &from, Actions: actions, PathPrefix: *pathPrefix, Limit: 1000}
		for {
			resp, err := cl.QueryAudit(a.ctx, req)
			if err != nil {
				if a.ctx.Err() != nil {
					return 0
				}
				return c.fail(err)
			}
			for _, e := range resp.Entries {
				if e.Seq <= lastSeq {
					continue
				}
				lastSeq, from = e.Seq, e.Time
				if e.Action == "audit.query" && e.Principal.Accessor == me.Accessor {
					continue
				}
				if c.conn.json {
					_ = enc.Encode(e)
				} else {
					ver := "-"
					if e.Version > 0 {
						ver = strconv.FormatUint(e.Version, 10)
					}
					fmt.Fprintf(a.stdout, "%d %s %s %s %s %s %s v%s %s\n", e.Seq, fmtTime(e.Time), orDash(e.Node), e.Action,
						fmtPrincipal(e.Principal), orDash(e.SourceIP), orDash(e.Path), ver, fmtResult(&e))
				}
			}
			if resp.NextPageToken == "" {
				break
			}
			req.PageToken = resp.NextPageToken
		}
		select {
		case <-a.ctx.Done():
			return 0
		case <-time.After(*interval):
		}
	}
}
