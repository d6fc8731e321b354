package main

import (
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/tlsgen"
)

// operatorTLS is `coffer operator tls`: a CA and node/client certificates
// for a test or compose cluster.
func operatorTLS(a *app, args []string) int {
	c := a.newCmd("operator tls", "--out DIR --nodes n1,n2,n3 [--hosts h1,h2]",
		"Creates a CA (ca.pem, ca-key.pem), one certificate per node (NODE.pem, NODE-key.pem; valid for the node name,\nlocalhost and 127.0.0.1, for the API and mutual TLS between nodes) and a client certificate, for test and\ncompose clusters. Existing files are never overwritten.")
	out := c.fs.String("out", "", "directory to write into")
	nodes := c.fs.String("nodes", "", "comma-separated node names (also DNS names in their certificates)")
	hosts := c.fs.String("hosts", "", "comma-separated extra DNS names or IPs for every node certificate")
	if _, rc := c.parse(args, 0, 0); rc >= 0 {
		return rc
	}
	if *out == "" || *nodes == "" {
		return c.usageErr("--out and --nodes are required")
	}
	opts := tlsgen.Options{Nodes: splitList(*nodes), Hosts: splitList(*hosts)}
	if err := tlsgen.Generate(*out, opts); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(a.stdout, "Wrote a CA and certificates for %s and a client to %s\n", strings.Join(opts.Nodes, ", "), *out)
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
