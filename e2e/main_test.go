// Package e2e tests the coffer binary from the outside: real server
// processes on loopback, driven through the CLI and the HTTP API, the way an
// operator and an application use them.
//
// TestMain builds ./cmd/coffer once; every test execs that binary. Nothing
// here imports the server's packages (only apitypes, for the wire format).
package e2e

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// cofferBin is the binary under test, built by TestMain.
var cofferBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	// COFFER_E2E_BIN runs the suite against a prebuilt binary instead, e.g.
	// the build of an older commit, to show a regression test fails there.
	if bin := os.Getenv("COFFER_E2E_BIN"); bin != "" {
		cofferBin = bin
		return m.Run()
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "coffer-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cofferBin = filepath.Join(dir, "coffer")
	build := exec.Command(goTool(), "build", "-o", cofferBin, "./cmd/coffer")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building coffer failed: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// goTool is the go command: the one on PATH, else the one of this
// toolchain.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// repoRoot is the directory of the module's go.mod: from `go env GOMOD`,
// else found by walking up from the working directory.
func repoRoot() (string, error) {
	if out, err := exec.Command(goTool(), "env", "GOMOD").Output(); err == nil {
		gomod := strings.TrimSpace(string(out))
		if gomod != "" && gomod != os.DevNull {
			return filepath.Dir(gomod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/cofferhq/coffer\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of github.com/cofferhq/coffer above the working directory")
		}
		dir = parent
	}
}
