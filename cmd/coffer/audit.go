package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/audit"
	"github.com/cofferhq/coffer/client"
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
	c := a.newCmd("audit verify", "[--file FILE] [flags]",
		"Checks the whole audit hash chain of the node, up to the replicated chain head's hash; exits 1 when\n"+
			"it is broken. With --file, checks an --audit-file export (JSON lines) instead: every line parsed\n"+
			"strictly, every hash recomputed, no gap; and, when a node is given (--addr or $COFFER_ADDR), that\n"+
			"the file's last hash is the cluster's at that seq, so a file whose chain was recomputed after an\n"+
			"edit is caught and the altered seq named.").withConn().withRead()
	file := c.fs.String("file", "", "verify this --audit-file export (JSON lines) instead of the node's store")
	offline := c.fs.Bool("offline", false, "with --file: do not ask a node (a chain recomputed after an edit then passes)")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	if *file != "" {
		return auditVerifyFile(c, *file, *offline)
	}
	if *offline {
		return c.usageErr("--offline needs --file")
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

// fileVerifyResult is `coffer audit verify --file --json`'s answer.
type fileVerifyResult struct {
	OK             bool   `json:"ok"`
	File           string `json:"file"`
	Entries        uint64 `json:"entries"`
	FirstSeq       uint64 `json:"first_seq,omitempty"`
	LastSeq        uint64 `json:"last_seq,omitempty"`
	LastHash       string `json:"last_hash,omitempty"`
	FirstBrokenSeq uint64 `json:"first_broken_seq,omitempty"`
	Line           int    `json:"line,omitempty"`
	Reason         string `json:"reason,omitempty"`
	TornLines      int    `json:"torn_lines,omitempty"`
	TornTail       bool   `json:"torn_tail,omitempty"`
	// Anchored: the last hash was compared with the cluster's (AnchorAddr).
	Anchored   bool   `json:"anchored"`
	AnchorAddr string `json:"anchor_addr,omitempty"`
}

// auditCheckpointEvery spaces the hashes kept from the file for locating an
// altered entry; one queryAudit page (at most 1000 entries) covers the gap
// between two of them.
const auditCheckpointEvery = 1000

// auditVerifyFile is `coffer audit verify --file`: see auditVerify.
func auditVerifyFile(c *cmd, path string, offline bool) int {
	a := c.a
	res := fileVerifyResult{File: path}
	done := func() int {
		switch {
		case c.jsonOut():
			c.printValue(&res)
		case res.OK && res.Entries == 0:
			fmt.Fprintln(a.stdout, "OK: the file holds no entry")
		case res.OK:
			fmt.Fprintf(a.stdout, "OK: %d entries (seq %d to %d)", res.Entries, res.FirstSeq, res.LastSeq)
			if res.Anchored {
				fmt.Fprintf(a.stdout, "; the hash of seq %d is the cluster's (%s)\n", res.LastSeq, res.AnchorAddr)
			} else {
				fmt.Fprint(a.stdout, "\nNOT ANCHORED: the file is one unbroken chain, but a chain recomputed after an edit also is;\n"+
					"give a node (--addr) to compare its last hash with the cluster's.\n")
				if res.FirstSeq > 1 {
					fmt.Fprintf(a.stdout, "The file starts at seq %d: its start is vouched for only by its own prev_hash.\n", res.FirstSeq)
				}
			}
			if res.TornLines > 0 || res.TornTail {
				fmt.Fprintf(a.stdout, "Skipped: %d line(s) torn by a crash and rewritten in full on the next line; torn last line: %v\n", res.TornLines, res.TornTail)
			}
		default:
			fmt.Fprintf(a.stdout, "BROKEN: %s\n", res.Reason)
		}
		if !res.OK {
			return 1
		}
		return 0
	}
	verify := func(opt audit.FileOptions) (audit.FileReport, error) {
		f, err := os.Open(path)
		if err != nil {
			return audit.FileReport{}, err
		}
		defer f.Close()
		return audit.VerifyJSONL(f, opt)
	}
	rep, err := verify(audit.FileOptions{CheckpointEvery: auditCheckpointEvery})
	if err != nil {
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		return 1
	}
	res.OK, res.Entries, res.FirstSeq, res.LastSeq, res.LastHash = rep.OK, rep.Entries, rep.First, rep.Last, rep.LastHash
	res.FirstBrokenSeq, res.Line, res.TornLines, res.TornTail = rep.FirstBroken, rep.Line, rep.TornLines, rep.TornTail
	res.Reason = rep.Reason
	anchor := !offline && (flagGiven(c.fs, "addr") || a.getenv(client.EnvAddr) != "")
	if !rep.OK || !anchor || rep.Entries == 0 {
		return done()
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	res.AnchorAddr = cl.Addr()
	// page reads the cluster's entries from seq on (queryAudit on the node
	// given, which answers from its own store).
	page := func(seq uint64, limit int) ([]apitypes.AuditEntry, error) {
		r, err := cl.QueryAudit(a.ctx, &apitypes.QueryAuditRequest{PageToken: audit.PageTokenAt(seq), Limit: limit, ReadOptions: c.readOptions()})
		if err != nil {
			return nil, err
		}
		if len(r.Entries) == 0 || r.Entries[0].Seq != seq {
			return nil, errNotHeld(seq)
		}
		return r.Entries, nil
	}
	ref := func(seq uint64) (string, error) {
		es, err := page(seq, 1)
		if err != nil {
			return "", err
		}
		return es[0].Hash, nil
	}
	brokenAt := func(seq uint64, why string) int {
		res.OK, res.Anchored, res.FirstBrokenSeq, res.Reason = false, true, seq, why
		return done()
	}
	h, err := ref(rep.Last)
	var nh errNotHeld
	switch {
	case errors.As(err, &nh):
		return brokenAt(rep.Last, fmt.Sprintf("the node at %s holds no entry with seq %d, the file's last: "+
			"the file claims entries the cluster does not have (or that node's trail is incomplete: try another node)", res.AnchorAddr, rep.Last))
	case err != nil:
		return c.fail(err)
	case h == rep.LastHash:
		res.Anchored = true
		return done()
	}
	// The file's chain is whole but not the cluster's: find the first entry
	// that differs, first among the checkpoints, then entry by entry in the
	// stretch before the first checkpoint that differs.
	points := rep.Checkpoints
	if len(points) == 0 || points[len(points)-1].Seq != rep.Last {
		points = append(points, audit.Head{Seq: rep.Last, Hash: rep.LastHash})
	}
	i, err := audit.FirstMismatch(points, ref)
	if err != nil && !errors.As(err, &nh) {
		return c.fail(err)
	}
	if err != nil || i == len(points) {
		return brokenAt(rep.Last, fmt.Sprintf("the hash of seq %d is not the cluster's: the file was altered at or before seq %d", rep.Last, rep.Last))
	}
	lo, hi := rep.First, points[i].Seq
	if i > 0 {
		lo = points[i-1].Seq + 1
	}
	var mine []apitypes.AuditEntry
	if _, err := verify(audit.FileOptions{OnEntry: func(e *apitypes.AuditEntry) {
		if e.Seq >= lo && e.Seq <= hi {
			mine = append(mine, *e)
		}
	}}); err != nil {
		fmt.Fprintf(a.stderr, "error: %v\n", err)
		return 1
	}
	theirs, err := page(lo, int(hi-lo+1))
	if err != nil && !errors.As(err, &nh) {
		return c.fail(err)
	}
	for k := range mine {
		if k >= len(theirs) || theirs[k].Seq != mine[k].Seq {
			break
		}
		if theirs[k].Hash != mine[k].Hash {
			return brokenAt(mine[k].Seq, fmt.Sprintf("entry %d is not the cluster's (it differs in: %s): the file was altered at seq %d and the later hashes recomputed",
				mine[k].Seq, strings.Join(audit.DiffFields(&mine[k], &theirs[k]), ", "), mine[k].Seq))
		}
	}
	return brokenAt(hi, fmt.Sprintf("the hash of seq %d is not the cluster's: the file was altered at or before seq %d", hi, hi))
}

// errNotHeld: the node asked holds no entry with that seq.
type errNotHeld uint64

func (e errNotHeld) Error() string { return fmt.Sprintf("no audit entry with seq %d", uint64(e)) }
