package tlsgen

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/transport"
)

func TestGenerateVerifies(t *testing.T) {
	dir := t.TempDir()
	if err := Generate(dir, Options{Nodes: []string{"n1", "n2"}, Hosts: []string{"10.0.0.5"}}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("bad ca.pem")
	}
	for _, n := range []string{"n1", "n2", "client"} {
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, n+".pem"), filepath.Join(dir, n+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		id, err := transport.NodeIDFromCert(leaf)
		if n == "client" {
			if err == nil {
				t.Fatalf("client certificate carries the node marking (node %q)", id)
			}
		} else if err != nil || id != n {
			t.Fatalf("%s: node id %q, %v; want the node marking for %s", n, id, err, n)
		}
		if n != "client" {
			for _, host := range []string{n, "localhost", "127.0.0.1", "10.0.0.5"} {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
					t.Fatalf("%s for %s: %v", n, host, err)
				}
			}
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "n1-key.pem")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if err := Generate(dir, Options{Nodes: []string{"n1"}}); err == nil {
		t.Fatal("overwrote existing material")
	}
}
