package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

func TestKMSLifecycleCommands(t *testing.T) {
	dd := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	c := newCanned(t).
		on("rotateKey", 200, apitypes.KeyResponse{Key: apitypes.Key{Name: "k", State: "enabled", CurrentVersion: 3}, Index: 4}).
		on("disableKey", 200, apitypes.KeyResponse{Key: apitypes.Key{Name: "k", State: "disabled"}, Index: 5}).
		on("cancelKeyDeletion", 200, apitypes.KeyResponse{Key: apitypes.Key{Name: "k", State: "disabled"}, Index: 6}).
		on("scheduleKeyDeletion", 200, apitypes.KeyResponse{Key: apitypes.Key{Name: "k", State: "pending_deletion", DeletionDate: &dd}, Index: 7}).
		on("listKeyBindings", 200, apitypes.ListKeyBindingsResponse{Paths: []string{"/a", "/b"}, NextPageToken: "tok2", Index: 8}).
		on("sys/rewrap", 200, apitypes.RewrapResponse{RootKeyFingerprint: "abcd", Rewrapped: 5, Index: 9}).
		on("listSecrets", 200, apitypes.ListSecretsResponse{Secrets: []apitypes.Secret{{Path: "/a", KMSKey: "k"}}, Index: 10})

	expect(t, c.run("kms", "rotate", "k"), 0, "Rotated key k to version 3")
	if _, b := c.last(); b["name"] != "k" {
		t.Errorf("rotate body %v", b)
	}
	expect(t, c.run("kms", "disable", "k"), 0, "Disabled key k")
	expect(t, c.run("kms", "cancel-deletion", "k"), 0, "now disabled")
	expect(t, c.run("kms", "schedule-deletion", "k", "--pending-days", "30"), 0, "in 30 days", "2026-02-01")
	if _, b := c.last(); b["pending_days"] != 30.0 || b["force"] != nil {
		t.Errorf("schedule body %v", b)
	}

	r := c.run("kms", "bindings", "k", "--page-size", "2", "--consistency", "leader")
	expect(t, r, 0, "/a\n/b\n")
	if !strings.Contains(r.stderr, "--page-token tok2") {
		t.Errorf("no next-page hint: %q", r.stderr)
	}
	if _, b := c.last(); b["page_size"] != 2.0 || b["consistency"] != "leader" || b["name"] != "k" {
		t.Errorf("bindings body %v", b)
	}

	expect(t, c.run("operator", "rewrap"), 0, "abcd", "5")
	expect(t, c.run("secret", "list", "--inactive-key"), 0, "/a")
	if _, b := c.last(); b["key_state"] != "inactive" || b["recursive"] != true {
		t.Errorf("list body %v", b)
	}

	c.fail("scheduleKeyDeletion", errs.FailedPrecondition, `kms key "k" is still bound to 2 secret(s)`)
	r = c.run("kms", "schedule-deletion", "k", "--pending-days", "7")
	if r.rc != 1 || !strings.Contains(r.stderr, "FailedPrecondition") || !strings.Contains(r.stderr, "2 secret") {
		t.Errorf("refused schedule: %+v", r)
	}
}
