package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

var operatorCommands = []command{
	{"init", "Initialise a new cluster and print its root token (shown once)", operatorInit},
	{"keygen", "Generate a new root key (32 random bytes, base64)", operatorKeygen},
	{"rewrap", "Re-wrap all KMS key material under the newest root key (kms.go)", operatorRewrap},
	{"tls", "Create a CA and node/client certificates for a test or compose cluster", operatorTLS},
}

func runOperatorGroup(a *app, args []string) int {
	return a.dispatch("operator", operatorCommands, args)
}

func operatorInit(a *app, args []string) int {
	c := a.newCmd("operator init", "[flags]",
		"Initialises a new cluster (once, on any node) and prints its root token, which has the admin policy.\nThe token is shown only this once.").withConn()
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	var resp apitypes.InitResponse
	if err := c.call("sys/init", nil, &resp); err != nil {
		return c.fail(err)
	}
	if !c.jsonOut() {
		kv(a.stdout, "Root token", resp.RootToken, "Accessor", resp.Accessor)
	}
	fmt.Fprint(a.stderr, "\nWARNING: the root token is shown only this once and can't be recovered.\n"+
		"Store it in a safe place now, use it to create narrower tokens\n"+
		"('coffer acl token create'), and keep it out of shell history and logs.\n")
	return 0
}

// rootKeyBytes is the size of a root key (SPEC §4).
const rootKeyBytes = 32

func operatorKeygen(a *app, args []string) int {
	c := a.newCmd("operator keygen", "[--out FILE]",
		"Generates a new root key: 32 random bytes, base64. Every node of a cluster needs the same key file\n(--root-key-file). Without --out the key is printed on stdout.")
	out := c.fs.String("out", "", "write the key to `FILE` (mode 0600; an existing file is never overwritten)")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	line, err := newRootKeyLine()
	if err != nil {
		return c.fail(err)
	}
	if *out == "" {
		fmt.Fprint(a.stdout, line)
		return 0
	}
	if err := writeNewFile(*out, []byte(line)); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(a.stderr, "Wrote a new root key to %s. Keep a copy in a safe place: without it the data can't be read.\n", *out)
	return 0
}

// newRootKeyLine returns 32 random bytes in standard base64 with padding,
// and a newline.
func newRootKeyLine() (string, error) {
	key := make([]byte, rootKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return "", errs.New(errs.Internal, "reading random bytes: %v", err)
	}
	return base64.StdEncoding.EncodeToString(key) + "\n", nil
}

// writeNewFile creates path with mode 0600 and data, refusing to replace an
// existing file.
func writeNewFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return errs.New(errs.AlreadyExists, "%s exists; refusing to overwrite it", path)
	}
	if err != nil {
		return errs.New(errs.InvalidArgument, "%v", err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return errs.New(errs.Internal, "writing %s: %v", path, werr)
	}
	return nil
}
