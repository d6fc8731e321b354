package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/client"
	"github.com/cofferhq/coffer/errs"
)

// app is the CLI's environment, injected so tests can run commands in
// process.
type app struct {
	ctx       context.Context
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
	stdinTTY  bool
	stdoutTTY bool

	// retryWait overrides the client's maximum retry wait (tests).
	retryWait time.Duration
}

// cmd is one running subcommand: its flags, and its connection when it
// talks to a node.
type cmd struct {
	a        *app
	name     string // "secret get"
	synopsis string // "PATH [flags]"
	summary  string
	fs       *flag.FlagSet

	conn *connFlags
	read *readFlags
	cl   *client.Client
}

type connFlags struct {
	addr, token, cacert string
	json                bool
}

type readFlags struct {
	consistency string
	minIndex    uint64
}

// newCmd starts a subcommand named name ("secret get").
func (a *app) newCmd(name, synopsis, summary string) *cmd {
	fs := flag.NewFlagSet("coffer "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are printed by parse
	fs.Usage = func() {}
	return &cmd{a: a, name: name, synopsis: synopsis, summary: summary, fs: fs}
}

// withConn adds the connection flags of every client command.
func (c *cmd) withConn() *cmd {
	c.conn = &connFlags{}
	c.fs.StringVar(&c.conn.addr, "addr", "", "node address (default $COFFER_ADDR, else "+client.DefaultAddr+")")
	c.fs.StringVar(&c.conn.token, "token", "", "token (default $COFFER_TOKEN)")
	c.fs.StringVar(&c.conn.cacert, "cacert", "", "PEM CA file for https (default $COFFER_CACERT)")
	c.fs.BoolVar(&c.conn.json, "json", false, "print the API answer as JSON")
	return c
}

// withRead adds the read-consistency flags of read commands.
func (c *cmd) withRead() *cmd {
	c.read = &readFlags{}
	c.fs.StringVar(&c.read.consistency, "consistency", "", "stale (default: this node's state) or leader (linearizable)")
	c.fs.Uint64Var(&c.read.minIndex, "min-index", 0, "wait until the node has applied this index (read your writes)")
	return c
}

func (c *cmd) readOptions() apitypes.ReadOptions {
	if c.read == nil {
		return apitypes.ReadOptions{}
	}
	return apitypes.ReadOptions{Consistency: c.read.consistency, MinIndex: c.read.minIndex}
}

func (c *cmd) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: coffer %s %s\n\n%s\n", c.name, c.synopsis, c.summary)
	has := false
	c.fs.VisitAll(func(*flag.Flag) { has = true })
	if has {
		fmt.Fprint(w, "\nFlags:\n")
		c.fs.SetOutput(w)
		c.fs.PrintDefaults()
		c.fs.SetOutput(io.Discard)
	}
}

// parse parses args, flags and positional arguments in any order, and checks
// that there are min to max positional arguments (max < 0: no limit). It
// returns the positional arguments and -1, or an exit code to return.
func (c *cmd) parse(args []string, minArgs, maxArgs int) ([]string, int) {
	pos, err := parseInterspersed(c.fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.usage(c.a.stdout)
		return nil, 0
	}
	if err != nil {
		return nil, c.usageErr("%v", err)
	}
	switch {
	case len(pos) < minArgs:
		return nil, c.usageErr("missing argument: coffer %s %s", c.name, c.synopsis)
	case maxArgs >= 0 && len(pos) > maxArgs:
		return nil, c.usageErr("too many arguments: %q", pos[maxArgs:])
	}
	if c.read != nil && c.read.consistency != "" &&
		c.read.consistency != apitypes.ConsistencyStale && c.read.consistency != apitypes.ConsistencyLeader {
		return nil, c.usageErr("--consistency must be %s or %s", apitypes.ConsistencyStale, apitypes.ConsistencyLeader)
	}
	return pos, -1
}

// usageErr reports a usage error and returns exit code 2.
func (c *cmd) usageErr(format string, args ...any) int {
	fmt.Fprintf(c.a.stderr, "error: %s\nRun 'coffer %s -h' for usage.\n", fmt.Sprintf(format, args...), c.name)
	return 2
}

// fail reports err as "error: <Code>: <message>" and returns exit code 1.
func (c *cmd) fail(err error) int {
	return c.a.fail(err)
}

func (a *app) fail(err error) int {
	fmt.Fprintf(a.stderr, "error: %s\n", errs.As(err).Error())
	return 1
}

func (c *cmd) jsonOut() bool { return c.conn != nil && c.conn.json }

// client returns the command's client, from flags then environment.
func (c *cmd) client() (*client.Client, error) {
	if c.cl != nil {
		return c.cl, nil
	}
	addr := firstNonEmpty(c.conn.addr, c.a.getenv(client.EnvAddr), client.DefaultAddr)
	token := firstNonEmpty(c.conn.token, c.a.getenv(client.EnvToken))
	cacert := firstNonEmpty(c.conn.cacert, c.a.getenv(client.EnvCACert))
	wait := 2 * time.Second
	if c.a.retryWait > 0 {
		wait = c.a.retryWait
	}
	cl, err := client.New(addr, token,
		client.WithCACertFile(cacert),
		client.WithUserAgent("coffer-cli/"+version),
		client.WithRetry(4, wait))
	if err != nil {
		return nil, err
	}
	c.cl = cl
	return cl, nil
}

// call runs an action; with --json it prints the raw answer. resp (may be
// nil) is filled either way.
func (c *cmd) call(action string, req, resp any) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.Do(c.a.ctx, action, req, &raw); err != nil {
		return err
	}
	if c.jsonOut() {
		c.printJSON(raw)
	}
	if resp != nil {
		if err := json.Unmarshal(raw, resp); err != nil {
			return errs.New(errs.Internal, "malformed %s answer: %v", action, err)
		}
	}
	return nil
}

// printJSON prints a JSON document indented; other bytes are printed as is.
func (c *cmd) printJSON(raw []byte) {
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		buf.Reset()
		buf.Write(raw)
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte("\n")) {
		buf.WriteByte('\n')
	}
	_, _ = c.a.stdout.Write(buf.Bytes())
}

// printValue prints v as JSON (used for answers without types).
func (c *cmd) printValue(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(c.a.stderr, "error: %v\n", err)
		return
	}
	c.printJSON(b)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// table prints rows aligned in columns under a header.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() { _ = t.tw.Flush() }

// kv prints "key: value" lines aligned.
func kv(w io.Writer, pairs ...string) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], pairs[i+1])
	}
	_ = tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
