package main

import (
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// parseInterspersed parses flags that may come before, between or after the
// positional arguments (`coffer secret get /a/b --json`), and returns the
// positional arguments in order. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// labelsFlag collects repeatable --label k=v flags.
type labelsFlag struct {
	m map[string]string
}

func (l *labelsFlag) String() string {
	if l == nil || len(l.m) == 0 {
		return ""
	}
	return fmtLabels(l.m)
}

func (l *labelsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q is not key=value", s)
	}
	if l.m == nil {
		l.m = map[string]string{}
	}
	if _, dup := l.m[k]; dup {
		return fmt.Errorf("label %q given twice", k)
	}
	l.m[k] = v
	return nil
}

func fmtLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

// listFlag collects a repeatable flag; each occurrence may also hold a
// comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// optUint is a uint64 flag that knows whether it was given (0 is a value).
type optUint struct {
	set bool
	v   uint64
}

func (o *optUint) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a non-negative integer", s)
	}
	o.set, o.v = true, v
	return nil
}

func (o *optUint) ptr() *uint64 {
	if !o.set {
		return nil
	}
	v := o.v
	return &v
}

// timeFlag is an RFC 3339 time, or a duration meaning that long ago
// ("1h" is an hour before now).
type timeFlag struct {
	t   *time.Time
	now func() time.Time
}

func (f *timeFlag) String() string {
	if f == nil || f.t == nil {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *timeFlag) Set(s string) error {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		f.t = &t
		return nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		now := time.Now
		if f.now != nil {
			now = f.now
		}
		t := now().Add(-d).UTC()
		f.t = &t
		return nil
	}
	return fmt.Errorf("%q is neither an RFC 3339 time (2006-01-02T15:04:05Z) nor a duration (1h30m)", s)
}

// flagGiven reports whether the flag name was set on the command line.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}
