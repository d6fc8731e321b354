// Command coffer is Coffer's single binary: the server (coffer server) and
// the command-line client for the HTTP API (SPEC §3).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: -ldflags "-X main.version=1.2.3".
var version = "dev"

// command is one subcommand: a leaf (run) of a group or a group itself.
type command struct {
	name    string
	summary string
	run     func(a *app, args []string) int
}

// topCommands are the groups and commands of `coffer`. server, help and
// version are handled by run directly.
var topCommands = []command{
	{"secret", "Create, read, write and manage secrets", runSecretGroup},
	{"kms", "Manage KMS keys", runKMSGroup},
	{"acl", "Manage tokens and policies", runACLGroup},
	{"audit", "Query and verify the audit trail", runAuditGroup},
	{"node", "Manage the cluster's servers", runNodeGroup},
	{"snapshot", "Save and restore snapshots of the cluster state", runSnapshotGroup},
	{"operator", "Initialise a cluster, generate a root key, re-wrap key material", runOperatorGroup},
	{"health", "Check a node's health (exit 0 when it serves)", runHealth},
	{"bench", "Run a load workload against a cluster (ops/s, latency percentiles)", runBench},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		ctx:       ctx,
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
		getenv:    os.Getenv,
		stdinTTY:  isTerminal(os.Stdin),
		stdoutTTY: isTerminal(os.Stdout),
	}
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "server" {
		stop() // the server handles its own signals
		os.Exit(runServer(args[1:]))
	}
	rc := a.run(args)
	stop()
	os.Exit(rc)
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// run executes the client side of the CLI and returns the exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func (a *app) run(args []string) int {
	if len(args) == 0 {
		a.topUsage(a.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help":
		a.topUsage(a.stdout)
		return 0
	case "help":
		if len(args) == 1 {
			a.topUsage(a.stdout)
			return 0
		}
		return a.run(append(append([]string(nil), args[1:]...), "-h"))
	case "version", "-version", "--version":
		fmt.Fprintf(a.stdout, "coffer %s\n", version)
		return 0
	case "server":
		return runServer(args[1:])
	}
	for _, c := range topCommands {
		if c.name == args[0] {
			return c.run(a, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "error: unknown command %q\nRun 'coffer help' for usage.\n", args[0])
	return 2
}

func (a *app) topUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: coffer <command> [arguments]

Coffer is a highly available secrets manager. The client commands read
COFFER_ADDR (default http://127.0.0.1:7700), COFFER_TOKEN and COFFER_CACERT,
and accept --addr, --token, --cacert and --json (print the API answer as JSON)
anywhere after the command name.

Commands:
`)
	fmt.Fprintf(w, "  %-10s %s\n", "server", "Run a node (coffer server -dev: a one-node development server)")
	for _, c := range topCommands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "Print the version")
	fmt.Fprintf(w, "  %-10s %s\n", "help", "Show help: coffer help <command> [<subcommand>]")
	fmt.Fprint(w, "\nExit codes: 0 success, 1 failure, 2 usage error.\n")
}

// dispatch runs the subcommand of group named by args[0].
func (a *app) dispatch(group string, cmds []command, args []string) int {
	if len(args) == 0 {
		a.groupUsage(a.stderr, group, cmds)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if args[0] == "help" && len(args) > 1 {
			return a.dispatch(group, cmds, append(append([]string(nil), args[1:]...), "-h"))
		}
		a.groupUsage(a.stdout, group, cmds)
		return 0
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(a, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "error: unknown command \"coffer %s %s\"\nRun 'coffer %s -h' for usage.\n", group, args[0], group)
	return 2
}

func (a *app) groupUsage(w io.Writer, group string, cmds []command) {
	fmt.Fprintf(w, "Usage: coffer %s <command> [arguments]\n\nCommands:\n", group)
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'coffer %s <command> -h' for a command's flags.\n", group)
}
