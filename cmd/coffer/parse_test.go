package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseInterspersed(t *testing.T) {
	cases := []struct {
		args    []string
		pos     []string
		json    bool
		version uint64
	}{
		{[]string{"/a/b", "--json"}, []string{"/a/b"}, true, 0},
		{[]string{"--json", "/a/b"}, []string{"/a/b"}, true, 0},
		{[]string{"/a/b", "--version", "3", "--json"}, []string{"/a/b"}, true, 3},
		{[]string{"-version=4", "/a/b", "/c"}, []string{"/a/b", "/c"}, false, 4},
		{[]string{"/a", "--", "--json"}, []string{"/a", "--json"}, false, 0},
		{[]string{"--", "-weird"}, []string{"-weird"}, false, 0},
		{[]string{"-"}, []string{"-"}, false, 0},
		{nil, nil, false, 0},
	}
	for _, tc := range cases {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		j := fs.Bool("json", false, "")
		v := fs.Uint64("version", 0, "")
		pos, err := parseInterspersed(fs, tc.args)
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(pos, tc.pos) || *j != tc.json || *v != tc.version {
			t.Errorf("%q: pos %q json %v version %d", tc.args, pos, *j, *v)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseInterspersed(fs, []string{"/a", "--nope"}); err == nil {
		t.Error("unknown flag after a positional accepted")
	}
}

func TestLabelsFlag(t *testing.T) {
	var l labelsFlag
	for _, s := range []string{"env=prod", "team=a=b", "empty="} {
		if err := l.Set(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	want := map[string]string{"env": "prod", "team": "a=b", "empty": ""}
	if !reflect.DeepEqual(l.m, want) {
		t.Fatalf("labels %v", l.m)
	}
	if l.String() != "empty=, env=prod, team=a=b" {
		t.Errorf("String %q", l.String())
	}
	for _, bad := range []string{"noequals", "=v", "env=dev"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestListAndOptFlags(t *testing.T) {
	var l listFlag
	l.Set("admin, secrets-reader")
	l.Set("kms-admin")
	if !reflect.DeepEqual([]string(l), []string{"admin", "secrets-reader", "kms-admin"}) {
		t.Errorf("list %q", l)
	}
	var o optUint
	if o.ptr() != nil {
		t.Error("unset optUint has a value")
	}
	if err := o.Set("0"); err != nil || o.ptr() == nil || *o.ptr() != 0 {
		t.Errorf("optUint 0: %v", err)
	}
	if err := o.Set("-1"); err == nil {
		t.Error("negative accepted")
	}
}

func TestTimeFlag(t *testing.T) {
	now := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	f := timeFlag{now: func() time.Time { return now }}
	if err := f.Set("2026-01-01T10:00:00Z"); err != nil || !f.t.Equal(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("RFC 3339: %v %v", f.t, err)
	}
	if err := f.Set("90m"); err != nil || !f.t.Equal(now.Add(-90*time.Minute)) {
		t.Errorf("duration: %v %v", f.t, err)
	}
	for _, bad := range []string{"yesterday", "2026-01-01", "-1h"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// runLocal runs the CLI with no server and an empty environment.
func runLocal(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	a := &app{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		getenv: func(string) string { return "" }, retryWait: time.Millisecond}
	rc := a.run(args)
	return rc, out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string // in stderr
	}{
		{nil, "Usage: coffer <command>"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"secret"}, "Usage: coffer secret <command>"},
		{[]string{"secret", "frobnicate"}, `unknown command "coffer secret frobnicate"`},
		{[]string{"secret", "get"}, "missing argument"},
		{[]string{"secret", "get", "/a", "/b"}, "too many arguments"},
		{[]string{"secret", "get", "/a", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"secret", "get", "/a", "--version", "x"}, "invalid value"},
		{[]string{"secret", "get", "/a", "--consistency", "eventual"}, "--consistency must be"},
		{[]string{"secret", "create", "/a", "--value-file", "f", "--stdin"}, "exclude each other"},
		{[]string{"secret", "create", "/a", "--label", "novalue"}, "not key=value"},
		{[]string{"secret", "update", "/a"}, "nothing to update"},
		{[]string{"secret", "update", "/a", "--label", "a=b", "--clear-labels"}, "exclude each other"},
		{[]string{"secret", "destroy", "/a"}, "--version is required"},
		{[]string{"secret", "rebind", "/a"}, "--kms-key is required"},
		{[]string{"secret", "generate", "/a", "--charset", "emoji"}, "--charset must be"},
		{[]string{"acl", "token", "create"}, "--name is required"},
		{[]string{"kms", "schedule-deletion", "k", "--pending-days", "3"}, "--pending-days must be 7 to 30"},
		{[]string{"audit", "query", "--since", "tomorrow"}, "neither an RFC 3339 time"},
		{[]string{"operator", "keygen", "extra"}, "too many arguments"},
		{[]string{"snapshot", "save"}, "missing argument"},
	}
	for _, tc := range cases {
		rc, _, stderr := runLocal(tc.args...)
		if rc != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: rc %d, stderr %q; want 2 and %q", tc.args, rc, stderr, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"help"}, "Usage: coffer <command>"},
		{[]string{"-h"}, "Commands:"},
		{[]string{"--help"}, "secret"},
		{[]string{"help", "secret"}, "Usage: coffer secret <command>"},
		{[]string{"help", "secret", "get"}, "Usage: coffer secret get PATH"},
		{[]string{"secret", "put", "-h"}, "--expected-version"[1:]},
		{[]string{"secret", "help", "list"}, "Usage: coffer secret list"},
		{[]string{"acl", "token", "create", "--help"}, "-policy"},
		{[]string{"version"}, "coffer " + version},
	}
	for _, tc := range cases {
		rc, stdout, _ := runLocal(tc.args...)
		if rc != 0 || !strings.Contains(stdout, tc.want) {
			t.Errorf("%q: rc %d stdout %q; want 0 and %q", tc.args, rc, stdout, tc.want)
		}
	}
}
