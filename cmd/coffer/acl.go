package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

var aclCommands = []command{
	{"token", "Create, revoke and list tokens", runACLToken},
	{"policy", "Write, read, list and delete policies", runACLPolicy},
}

var aclTokenCommands = []command{
	{"create", "Create a token (shown once)", tokenCreate},
	{"revoke", "Revoke a token by accessor", tokenRevoke},
	{"list", "List tokens", tokenList},
	{"whoami", "Describe the token in use", tokenWhoami},
}

var aclPolicyCommands = []command{
	{"put", "Create or replace a policy from a JSON rules file", policyPut},
	{"get", "Show a policy", policyGet},
	{"list", "List policies", policyList},
	{"delete", "Delete a policy", policyDelete},
}

func runACLGroup(a *app, args []string) int { return a.dispatch("acl", aclCommands, args) }
func runACLToken(a *app, args []string) int { return a.dispatch("acl token", aclTokenCommands, args) }
func runACLPolicy(a *app, args []string) int {
	return a.dispatch("acl policy", aclPolicyCommands, args)
}

func tokenCreate(a *app, args []string) int {
	c := a.newCmd("acl token create", "--name NAME --policy P [flags]",
		"Creates a token. The token is printed only this once; the accessor identifies it afterwards.").withConn()
	name := c.fs.String("name", "", "token name (required)")
	var policies, cidrs listFlag
	c.fs.Var(&policies, "policy", "policy `NAME` (repeatable or comma-separated)")
	ttl := c.fs.String("ttl", "", "lifetime, e.g. 24h (default: no expiry)")
	c.fs.Var(&cidrs, "source-cidr", "only accept the token from this `CIDR` (repeatable)")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	if *name == "" {
		return c.usageErr("--name is required")
	}
	req := &apitypes.CreateTokenRequest{Name: *name, Policies: policies, TTL: *ttl, SourceCIDRs: cidrs}
	var resp apitypes.CreateTokenResponse
	if err := c.call("createToken", req, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		kv(a.stdout, "Token", resp.Token, "Accessor", resp.Accessor, "Expires", fmtTimePtr(resp.ExpiresAt))
	}
	fmt.Fprint(a.stderr, "\nThe token is shown only this once: store it now.\n")
	return 0
}

func tokenRevoke(a *app, args []string) int {
	c := a.newCmd("acl token revoke", "ACCESSOR [flags]", "Revokes the token with this accessor.").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if err := c.call("revokeToken", &apitypes.RevokeTokenRequest{Accessor: pos[0]}, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Revoked token %s\n", pos[0])
	}
	return 0
}

func tokenList(a *app, args []string) int {
	c := a.newCmd("acl token list", "[flags]", "Lists tokens (never the tokens themselves).").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.ListTokensResponse
	if err := c.call("listTokens", &apitypes.ListTokensRequest{ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		return 0
	}
	t := newTable(a.stdout, "ACCESSOR", "NAME", "POLICIES", "CREATED", "EXPIRES", "SOURCE CIDRS")
	for _, tk := range resp.Tokens {
		t.row(tk.Accessor, tk.Name, orDash(strings.Join(tk.Policies, ",")), fmtTime(tk.CreatedAt),
			fmtTimePtr(tk.ExpiresAt), orDash(strings.Join(tk.SourceCIDRs, ",")))
	}
	t.flush()
	return 0
}

func tokenWhoami(a *app, args []string) int {
	c := a.newCmd("acl token whoami", "[flags]", "Describes the token in use.").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.WhoamiResponse
	if err := c.call("whoami", &apitypes.WhoamiRequest{ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		kv(a.stdout,
			"Accessor", resp.Accessor,
			"Name", resp.Name,
			"Policies", orDash(strings.Join(resp.Policies, ", ")),
			"Created", fmtTime(resp.CreatedAt),
			"Expires", fmtTimePtr(resp.ExpiresAt),
			"Source CIDRs", orDash(strings.Join(resp.SourceCIDRs, ", ")))
	}
	return 0
}

// Policy types are not in apitypes yet: requests are built from the SPEC's
// field names and answers are printed as JSON.

func policyPut(a *app, args []string) int {
	c := a.newCmd("acl policy put", "NAME --rules-file FILE [flags]",
		"Creates or replaces a policy. FILE (- for stdin) holds a JSON array of rules, or an object with \"rules\":\n"+
			`[{"effect": "allow", "actions": ["getSecretValue"], "paths": ["/app/prod/*"]}]`).withConn()
	file := c.fs.String("rules-file", "", "JSON rules `FILE` (required; - for stdin)")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if *file == "" {
		return c.usageErr("--rules-file is required")
	}
	rules, err := readRules(a, *file)
	if err != nil {
		return c.fail(err)
	}
	if err := c.call("putPolicy", map[string]any{"name": pos[0], "rules": rules}, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Wrote policy %s\n", pos[0])
	}
	return 0
}

// readRules reads a rules file: a JSON array, or an object with "rules".
func readRules(a *app, file string) (json.RawMessage, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(io.LimitReader(a.stdin, apitypes.MaxBodyBytes))
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "rules file: %v", err)
	}
	data = bytes.TrimSpace(data)
	if bytes.HasPrefix(data, []byte("{")) {
		var obj struct {
			Rules json.RawMessage `json:"rules"`
		}
		if err := json.Unmarshal(data, &obj); err != nil || obj.Rules == nil {
			return nil, errs.New(errs.InvalidArgument, "rules file %s: want a JSON array of rules or {\"rules\": [...]}", file)
		}
		data = obj.Rules
	}
	var rules []json.RawMessage
	if err := json.Unmarshal(data, &rules); err != nil {
		return nil, errs.New(errs.InvalidArgument, "rules file %s: %v", file, err)
	}
	return data, nil
}

func policyGet(a *app, args []string) int {
	c := a.newCmd("acl policy get", "NAME [flags]", "Shows a policy as JSON.").withConn().withRead()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	return c.rawCall("getPolicy", map[string]any{"name": pos[0]})
}

func policyList(a *app, args []string) int {
	c := a.newCmd("acl policy list", "[flags]", "Lists policies as JSON.").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	return c.rawCall("listPolicies", map[string]any{})
}

func policyDelete(a *app, args []string) int {
	c := a.newCmd("acl policy delete", "NAME [flags]", "Deletes a policy.").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if err := c.call("deletePolicy", map[string]any{"name": pos[0]}, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Deleted policy %s\n", pos[0])
	}
	return 0
}

// rawCall runs an action whose answer has no type yet and prints the answer
// as JSON. Read options are added to req when the command has them.
func (c *cmd) rawCall(action string, req map[string]any) int {
	if ro := c.readOptions(); ro.Consistency != "" || ro.MinIndex != 0 {
		if ro.Consistency != "" {
			req["consistency"] = ro.Consistency
		}
		if ro.MinIndex != 0 {
			req["min_index"] = ro.MinIndex
		}
	}
	var raw json.RawMessage
	if err := c.call(action, req, &raw); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		c.printJSON(raw)
	}
	return 0
}
