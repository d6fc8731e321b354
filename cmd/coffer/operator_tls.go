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
		"Creates a CA (ca.pem, ca-key.pem), one node certificate per node (NODE.pem, NODE-key.pem; valid for the node\n"+
			"name, localhost and 127.0.0.1, for the API and the cluster port) and a client certificate (client.pem,\n"+
			"client-key.pem), for test and compose clusters. Existing files are never overwritten.\n\n"+
			"Node certificates carry the node marking, the URI SAN urn:coffer:node:NODE: the cluster port accepts only\n"+
			"certificates with it and takes the peer's node id from it, so each name in --nodes must be that node's\n"+
			"--node-id. The client certificate has no marking and can't open the cluster port (API callers are\n"+
			"authenticated by token). Certificates made by older versions have no marking: regenerate them.")
	out := c.fs.String("out", "", "directory to write into")
	nodes := c.fs.String("nodes", "", "comma-separated node ids (each node's --node-id; also DNS names in their certificates)")
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
