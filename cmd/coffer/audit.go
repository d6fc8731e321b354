package main

import (
	"fmt"
	"strconv"

	"github.com/cofferhq/coffer/apitypes"
)

var auditCommands = []command{
	{"query", "List audit entries matching filters", auditQuery},
	{"verify", "Check the audit hash chain (exit 1 when broken)", auditVerify},
	{"tail", "Follow the audit trail as entries are committed", auditTail},
}

func runAuditGroup(a *app, args []string) int { return a.dispatch("audit", auditCommands, args) }

func auditQuery(a *app, args []string) int {
	c := a.newCmd("audit query", "[flags]", "Lists audit entries, oldest first.").withConn().withRead()
	var since, until timeFlag
	c.fs.Var(&since, "since", "entries at or after `TIME` (RFC 3339, or a duration: 1h = an hour ago)")
	c.fs.Var(&until, "until", "entries before `TIME` (RFC 3339, or a duration ago)")
	var actions listFlag
	c.fs.Var(&actions, "action", "only this event `NAME`, e.g. secrets.get_value (repeatable)")
	principal := c.fs.String("principal", "", "only this principal (token accessor or name)")
	pathPrefix := c.fs.String("path-prefix", "", "only entries whose path starts with this")
	limit := c.fs.Int("limit", 0, "at most this many entries")
	pageToken := c.fs.String("page-token", "", "continue from the previous page's token")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	if *limit < 0 {
		return c.usageErr("--limit must not be negative")
	}
	req := &apitypes.QueryAuditRequest{Since: since.t, Until: until.t, Actions: actions, Principal: *principal,
		PathPrefix: *pathPrefix, Limit: *limit, PageToken: *pageToken, ReadOptions: c.readOptions()}
	var resp apitypes.QueryAuditResponse
	if err := c.call("queryAudit", req, &resp); err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		return 0
	}
	t := newTable(a.stdout, "SEQ", "TIME", "NODE", "ACTION", "PRINCIPAL", "SOURCE", "PATH", "VERSION", "RESULT")
	for _, e := range resp.Entries {
		ver := "-"
		if e.Version > 0 {
			ver = strconv.FormatUint(e.Version, 10)
		}
		t.row(strconv.FormatUint(e.Seq, 10), fmtTime(e.Time), orDash(e.Node), e.Action, fmtPrincipal(e.Principal),
			orDash(e.SourceIP), orDash(e.Path), ver, fmtResult(&e))
	}
	t.flush()
	if resp.NextPageToken != "" {
		fmt.Fprintf(a.stderr, "More entries: add --page-token %s\n", resp.NextPageToken)
	}
	return 0
}

func fmtPrincipal(p apitypes.Principal) string {
	switch {
	case p.Name != "" && p.Accessor != "":
		return p.Name + " (" + p.Accessor + ")"
	case p.Name != "":
		return p.Name
	default:
		return orDash(p.Accessor)
	}
}

func fmtResult(e *apitypes.AuditEntry) string {
	if e.ErrorCode != "" {
		return e.Result + " (" + e.ErrorCode + ")"
	}
	return e.Result
}

func auditVerify(a *app, args []string) int {
	c := a.newCmd("audit verify", "[flags]", "Checks the whole audit hash chain; exits 1 when it is broken.").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.VerifyAuditResponse
	if err := c.call("verifyAudit", &apitypes.VerifyAuditRequest{ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		if resp.OK {
			fmt.Fprintf(a.stdout, "OK: %d entries checked (seq %d to %d)\n", resp.Checked, resp.FirstSeq, resp.LastSeq)
		} else {
			fmt.Fprintf(a.stdout, "BROKEN: the chain breaks at seq %d (%d entries checked)\n", resp.FirstBrokenSeq, resp.Checked)
		}
	}
	if !resp.OK {
		return 1
	}
	return 0
}
