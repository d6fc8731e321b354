package main

import (
	"fmt"
)

// KMS types are not in apitypes yet: requests are built from the SPEC's
// field names and answers without a simple message are printed as JSON.

var kmsCommands = []command{
	{"create", "Create a KMS key", kmsSimple("create", "createKey", "Created key %s")},
	{"describe", "Show a key's state, versions and bound secrets count (JSON)", kmsRead("describe", "describeKey", true)},
	{"list", "List keys (JSON)", kmsRead("list", "listKeys", false)},
	{"rotate", "Add a key version; new secret versions use it", kmsSimple("rotate", "rotateKey", "Rotated key %s")},
	{"disable", "Disable a key (its secrets can't be read or written)", kmsSimple("disable", "disableKey", "Disabled key %s")},
	{"enable", "Enable a disabled key", kmsSimple("enable", "enableKey", "Enabled key %s")},
	{"schedule-deletion", "Schedule a key's deletion in 7 to 30 days", kmsScheduleDeletion},
	{"cancel-deletion", "Cancel a scheduled deletion", kmsSimple("cancel-deletion", "cancelKeyDeletion", "Canceled the deletion of key %s")},
	{"bindings", "List the secrets bound to a key (JSON)", kmsBindings},
}

func runKMSGroup(a *app, args []string) int { return a.dispatch("kms", kmsCommands, args) }

// kmsSimple is a write taking NAME (and, for create, --description).
func kmsSimple(sub, action, done string) func(*app, []string) int {
	return func(a *app, args []string) int {
		c := a.newCmd("kms "+sub, "NAME [flags]", fmt.Sprintf("Calls %s on the key NAME.", action)).withConn()
		var desc *string
		if action == "createKey" {
			desc = c.fs.String("description", "", "description")
		}
		pos, rc := c.parse(args, 1, 1)
		if rc >= 0 {
			return rc
		}
		req := map[string]any{"name": pos[0]}
		if desc != nil && *desc != "" {
			req["description"] = *desc
		}
		if err := c.call(action, req, nil); err != nil {
			return c.fail(err)
		}
		if !c.jsonOut() {
			fmt.Fprintf(a.stdout, done+"\n", pos[0])
		}
		return 0
	}
}

// kmsRead is a read printing its answer as JSON; withName takes NAME.
func kmsRead(sub, action string, withName bool) func(*app, []string) int {
	return func(a *app, args []string) int {
		syn, n := "[flags]", 0
		if withName {
			syn, n = "NAME [flags]", 1
		}
		c := a.newCmd("kms "+sub, syn, fmt.Sprintf("Calls %s and prints the answer as JSON.", action)).withConn().withRead()
		pos, rc := c.parse(args, n, n)
		if rc >= 0 {
			return rc
		}
		req := map[string]any{}
		if withName {
			req["name"] = pos[0]
		}
		return c.rawCall(action, req)
	}
}

func kmsScheduleDeletion(a *app, args []string) int {
	c := a.newCmd("kms schedule-deletion", "NAME --pending-days N [flags]",
		"Schedules the key's destruction after N days (7 to 30). Refused while secrets are bound to it, unless --force.").withConn()
	days := c.fs.Int("pending-days", 0, "days before destruction, 7 to 30 (required)")
	force := c.fs.Bool("force", false, "schedule even though secrets are bound to the key")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if *days < 7 || *days > 30 {
		return c.usageErr("--pending-days must be 7 to 30")
	}
	req := map[string]any{"name": pos[0], "pending_days": *days}
	if *force {
		req["force"] = true
	}
	if err := c.call("scheduleKeyDeletion", req, nil); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Scheduled the deletion of key %s in %d days\n", pos[0], *days)
	}
	return 0
}

func kmsBindings(a *app, args []string) int {
	c := a.newCmd("kms bindings", "NAME [flags]", "Lists the paths of the secrets bound to the key, as JSON.").withConn().withRead()
	pageToken := c.fs.String("page-token", "", "continue from the previous page's token")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	req := map[string]any{"name": pos[0]}
	if *pageToken != "" {
		req["page_token"] = *pageToken
	}
	return c.rawCall("listKeyBindings", req)
}
