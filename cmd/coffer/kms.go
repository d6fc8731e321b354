package main

import (
	"fmt"
	"strconv"

	"github.com/cofferhq/coffer/apitypes"
)

var kmsCommands = []command{
	{"create", "Create a KMS key", kmsCreate},
	{"describe", "Show a key's state, versions and bound secrets count (JSON)", kmsDescribe},
	{"list", "List keys (JSON)", kmsList},
	{"rotate", "Add a key version; new secret versions use it", kmsChange("rotate", "rotateKey", "Adds a key version. New secret versions use it; older ones stay readable.",
		func(name string) any { return &apitypes.RotateKeyRequest{Name: name} },
		func(k apitypes.Key) string {
			return fmt.Sprintf("Rotated key %s to version %d", k.Name, k.CurrentVersion)
		})},
	{"disable", "Disable a key (its secrets can't be read or written)", kmsChange("disable", "disableKey", "Disables the key: reading or writing a secret bound to it fails until it is enabled again.",
		func(name string) any { return &apitypes.DisableKeyRequest{Name: name} },
		func(k apitypes.Key) string { return "Disabled key " + k.Name })},
	{"enable", "Enable a disabled key", kmsChange("enable", "enableKey", "Enables a disabled key.",
		func(name string) any { return &apitypes.EnableKeyRequest{Name: name} },
		func(k apitypes.Key) string { return "Enabled key " + k.Name })},
	{"schedule-deletion", "Schedule a key's deletion in 7 to 30 days", kmsScheduleDeletion},
	{"cancel-deletion", "Cancel a scheduled deletion (the key becomes disabled)", kmsChange("cancel-deletion", "cancelKeyDeletion",
		"Cancels the key's scheduled deletion. The key becomes disabled; enable it to use it again.",
		func(name string) any { return &apitypes.CancelKeyDeletionRequest{Name: name} },
		func(k apitypes.Key) string {
			return "Canceled the deletion of key " + k.Name + "; it is now " + k.State
		})},
	{"bindings", "List the paths of the secrets bound to a key", kmsBindings},
}

func runKMSGroup(a *app, args []string) int { return a.dispatch("kms", kmsCommands, args) }

func kmsCreate(a *app, args []string) int {
	c := a.newCmd("kms create", "NAME [--description TEXT] [flags]", "Creates a KMS key (name: 1-64 of a-z 0-9 _ -).").withConn()
	desc := c.fs.String("description", "", "description")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	var resp apitypes.CreateKeyResponse
	if err := c.call("createKey", &apitypes.CreateKeyRequest{Name: pos[0], Description: *desc}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		fmt.Fprintf(a.stdout, "Created key %s\n", pos[0])
	}
	return 0
}

// kmsChange is a write on the key NAME that answers with the key.
func kmsChange(sub, action, summary string, mk func(string) any, done func(apitypes.Key) string) func(*app, []string) int {
	return func(a *app, args []string) int {
		c := a.newCmd("kms "+sub, "NAME [flags]", summary).withConn()
		pos, rc := c.parse(args, 1, 1)
		if rc >= 0 {
			return rc
		}
		var resp apitypes.KeyResponse
		if err := c.call(action, mk(pos[0]), &resp); err != nil {
			return c.fail(err)
		}
		if resp.Key.Name == "" {
			resp.Key.Name = pos[0]
		}
		if !c.jsonOut() {
			fmt.Fprintln(a.stdout, done(resp.Key))
		}
		return 0
	}
}

func kmsDescribe(a *app, args []string) int {
	c := a.newCmd("kms describe", "NAME [flags]", "Prints the key's state, versions and bound secrets count as JSON.").withConn().withRead()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	var resp apitypes.DescribeKeyResponse
	if err := c.call("describeKey", &apitypes.DescribeKeyRequest{Name: pos[0], ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		c.printValue(resp.Key)
	}
	return 0
}

func kmsList(a *app, args []string) int {
	c := a.newCmd("kms list", "[flags]", "Prints every key as JSON.").withConn().withRead()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.ListKeysResponse
	if err := c.call("listKeys", &apitypes.ListKeysRequest{ReadOptions: c.readOptions()}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		c.printValue(resp.Keys)
	}
	return 0
}

func kmsScheduleDeletion(a *app, args []string) int {
	c := a.newCmd("kms schedule-deletion", "NAME --pending-days N [flags]",
		"Schedules the key's destruction after N days (7 to 30). Refused while secrets are bound to it, unless --force.\n"+
			"Find them with 'coffer kms bindings NAME' and move them with 'coffer secret rebind PATH --kms-key OTHER'.").withConn()
	days := c.fs.Int("pending-days", 0, "days before destruction, 7 to 30 (required)")
	force := c.fs.Bool("force", false, "schedule even though secrets are bound to the key (they become unreadable once it is destroyed)")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	if *days < apitypes.MinPendingDays || *days > apitypes.MaxPendingDays {
		return c.usageErr("--pending-days must be %d to %d", apitypes.MinPendingDays, apitypes.MaxPendingDays)
	}
	req := &apitypes.ScheduleKeyDeletionRequest{Name: pos[0], PendingDays: *days, Force: *force}
	var resp apitypes.ScheduleKeyDeletionResponse
	if err := c.call("scheduleKeyDeletion", req, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		when := ""
		if resp.Key.DeletionDate != nil {
			when = " (" + fmtTime(*resp.Key.DeletionDate) + ")"
		}
		fmt.Fprintf(a.stdout, "Scheduled the deletion of key %s in %d days%s\n", pos[0], *days, when)
	}
	return 0
}

func kmsBindings(a *app, args []string) int {
	c := a.newCmd("kms bindings", "NAME [flags]", "Lists the paths of the secrets bound to the key, one per line.").withConn().withRead()
	pageSize := c.fs.Int("page-size", 0, fmt.Sprintf("paths per page (default %d, at most %d)", apitypes.DefaultPageSize, apitypes.MaxPageSize))
	pageToken := c.fs.String("page-token", "", "continue from the previous page's token")
	all := c.fs.Bool("all", false, "fetch every page")
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	req := &apitypes.ListKeyBindingsRequest{Name: pos[0], PageSize: *pageSize, PageToken: *pageToken, ReadOptions: c.readOptions()}
	for {
		var resp apitypes.ListKeyBindingsResponse
		if err := c.call("listKeyBindings", req, &resp); err != nil {
			return c.fail(err)
		}
		if !c.jsonOut() {
			for _, p := range resp.Paths {
				fmt.Fprintln(a.stdout, p)
			}
		}
		if resp.NextPageToken == "" {
			return 0
		}
		if !*all {
			if !c.jsonOut() {
				fmt.Fprintf(a.stderr, "More entries: add --page-token %s (or --all)\n", resp.NextPageToken)
			}
			return 0
		}
		req.PageToken = resp.NextPageToken
		if req.MinIndex < resp.Index {
			req.MinIndex = resp.Index // later pages from the same or a newer state
		}
	}
}

// operatorRewrap is `coffer operator rewrap` (admin).
func operatorRewrap(a *app, args []string) int {
	c := a.newCmd("operator rewrap", "[flags]",
		"Re-wraps all KMS key material under the newest root key of --root-key-file (on the node that serves the request),\n"+
			"in one committed change. Afterwards, once /v1/sys/health on every node shows no root key warning, the older\n"+
			"root keys can be removed from every node's --root-key-file.").withConn()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.RewrapResponse
	if err := c.call("sys/rewrap", &apitypes.RewrapRequest{}, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		kv(a.stdout, "Root key", resp.RootKeyFingerprint, "Re-wrapped key versions", strconv.Itoa(resp.Rewrapped), "Index", strconv.FormatUint(resp.Index, 10))
	}
	return 0
}
