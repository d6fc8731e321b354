// Package tlsgen makes the TLS material of a test or compose cluster: a CA,
// one certificate per node (usable as server and client, for the API and
// the mutual TLS between nodes) and a client certificate.
//
// Node certificates carry the node marking, the URI SAN
// urn:coffer:node:<name> (transport.NodeURIPrefix): the cluster port
// accepts only certificates with it, and takes the peer's node id from it,
// so a node's name here must be its --node-id. The client certificate has
// no marking: it opens the API, never the cluster port.
package tlsgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/cofferhq/coffer/transport"
)

// Options describe the material to generate.
type Options struct {
	Nodes    []string      // node names; each gets NAME.pem / NAME-key.pem
	Hosts    []string      // extra DNS names or IPs in every node certificate
	Validity time.Duration // default 1 year
}

// Generate writes ca.pem, ca-key.pem, NODE.pem, NODE-key.pem per node and
// client.pem, client-key.pem into dir. Existing files are never overwritten.
func Generate(dir string, o Options) error {
	if len(o.Nodes) == 0 {
		return errors.New("at least one node name is needed")
	}
	if o.Validity == 0 {
		o.Validity = 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := []string{"ca.pem", "ca-key.pem", "client.pem", "client-key.pem"}
	for _, n := range o.Nodes {
		names = append(names, n+".pem", n+"-key.pem")
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return fmt.Errorf("%s already exists; remove the directory's material first", filepath.Join(dir, n))
		}
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "Coffer cluster CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(o.Validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	if err := writePair(dir, "ca", caDER, caKey); err != nil {
		return err
	}
	for _, n := range o.Nodes {
		hosts := append([]string{n, "localhost", "127.0.0.1", "::1"}, o.Hosts...)
		mark, err := url.Parse(transport.NodeURIPrefix + n)
		if err != nil || mark.String() != transport.NodeURIPrefix+n {
			return fmt.Errorf("node name %q can't be a node id in a certificate", n)
		}
		if err := issue(dir, n, hosts, []*url.URL{mark}, ca, caKey, now, o.Validity, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}); err != nil {
			return err
		}
	}
	return issue(dir, "client", nil, nil, ca, caKey, now, o.Validity, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
}

func issue(dir, name string, hosts []string, uris []*url.URL, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time, validity time.Duration, usage []x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, URIs: uris,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(dir, name, der, key)
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	// Keys are readable by the container user too (scratch images run as
	// root); keep the directory private on shared hosts.
	return os.WriteFile(filepath.Join(dir, name+"-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err)
	}
	return n
}
