package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Issue 14, findings 1 and 2: the cluster port must refuse anyone who is not
// a node of the cluster. These tests replay the attacks black-box: the bytes
// are built by hand, as an outsider would, from the wire formats of the
// cluster port (transport/frame.go), the forwarded command envelope
// (fsm/commands.go) and hashicorp/raft's NetworkTransport.

// Cluster-port protocol bytes and the forwarding RPC method that carries
// commands to the leader (node/rpc.go).
const (
	wireByteRaft   = 1
	wireByteRPC    = 2
	wireRPCForward = 1
	wireRPCStatus  = 3
	wireCmdToken   = 9 // fsm.CmdCreateToken
	raftRequestVot = 1 // hashicorp/raft rpcRequestVote
)

func TestSecurityClusterPortOutsider(t *testing.T) {
	c := newCluster(t, 3)
	leader := c.waitVoters(clusterFormTimeout)
	fs := c.followers(leader)

	t.Run("forged forward of createToken commits nothing", func(t *testing.T) {
		token, hash := forgedToken(t)
		env := forgedCreateTokenEnvelope(t, hash)
		for _, s := range append([]*server{leader}, fs...) {
			if answer, ok := sendForward(t, s.clusterAddr, env); ok {
				t.Errorf("%s's cluster port answered a forward from an outsider: %q", s.name, trim(answer))
			}
		}
		// A write committed after the attack: anything the attack had
		// slipped into the log is applied by then.
		createToken(t, c, leader, "after-attack", "admin")
		for _, s := range c.nodes {
			r := post(t, s.url, token, "whoami", struct{}{}, nil)
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s: whoami with the outsider's token = %s, want 401 (the forged createToken was committed)", s.name, r)
			}
		}
		for _, s := range c.nodes {
			if !strings.Contains(s.log(), "refused a peer that did not prove membership") {
				t.Errorf("%s: no refusal logged for the outsider", s.name)
			}
		}
	})

	t.Run("raw RequestVote as a member does not depose the leader", func(t *testing.T) {
		before := leaderChanges(t, c)
		claimed := fs[0] // a voter the leader knows
		resp, ok := sendRequestVote(t, leader.clusterAddr, claimed)
		if ok {
			t.Errorf("the leader answered an outsider's RequestVote claiming to be %s: %q", claimed.name, trim(resp))
		}
		if h, _ := leader.health(); h.Role != "leader" {
			t.Errorf("%s is %q after the RequestVote, want leader (it stepped down for an outsider's term)", leader.name, h.Role)
		}
		createToken(t, c, leader, "after-vote", "admin") // the leader still commits
		if h, _ := leader.health(); h.Role != "leader" {
			t.Errorf("%s is %q after the RequestVote, want leader", leader.name, h.Role)
		}
		for _, s := range c.nodes {
			if h, _ := s.health(); h.LeaderID != leader.name {
				t.Errorf("%s names leader %q, want %s", s.name, h.LeaderID, leader.name)
			}
		}
		if after := leaderChanges(t, c); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("leader changes went from %v to %v: the RequestVote moved the term", before, after)
		}
	})
}

// With TLS, the client certificate of `coffer operator tls` is not a node's:
// the cluster port must refuse it, while a node certificate opens it.
func TestSecurityClusterPortTLSClientCert(t *testing.T) {
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	if r := runCLI(t, cleanEnv(), nil, "operator", "tls", "--out", tlsDir, "--nodes", "n1"); r.code != 0 {
		t.Fatalf("operator tls: %s", r)
	}
	keyFile := filepath.Join(dir, "root.key")
	if r := runCLI(t, cleanEnv(), nil, "operator", "keygen", "--out", keyFile); r.code != 0 {
		t.Fatalf("operator keygen: %s", r)
	}
	httpAddr, clusterAddr, gossipAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	s := newServer(t, "n1", []string{
		"--node-id", "n1", "--data-dir", filepath.Join(dir, "n1"), "--http-addr", httpAddr,
		"--cluster-addr", clusterAddr, "--gossip-addr", gossipAddr, "--root-key-file", keyFile, "--bootstrap",
		"--tls-cert", filepath.Join(tlsDir, "n1.pem"), "--tls-key", filepath.Join(tlsDir, "n1-key.pem"),
		"--tls-ca", filepath.Join(tlsDir, "ca.pem"), "--log-level", "debug",
	}, filepath.Join(dir, "n1.log"))
	s.start()
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if !waitFor(startTimeout, func() bool {
		if !s.running() {
			return true
		}
		resp, err := hc.Get("https://" + httpAddr + "/v1/sys/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) || !s.running() {
		t.Fatalf("TLS node not serving:\n%s", tail(s.logPath, 30))
	}

	status := func(pair string) ([]byte, error) {
		cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, pair+".pem"), filepath.Join(tlsDir, pair+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", clusterAddr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: "127.0.0.1"})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return rpcExchange(conn, wireRPCStatus, nil)
	}
	// The node's own certificate opens the port: the probe below works.
	if answer, err := status("n1"); err != nil || len(answer) == 0 || answer[0] != 0 {
		t.Fatalf("status over the cluster port with a node certificate: %q, %v", trim(answer), err)
	}
	if answer, err := status("client"); err == nil {
		t.Errorf("the cluster port answered a peer holding client.pem: %q", trim(answer))
	}
	if !strings.Contains(s.log(), "not a node certificate") {
		t.Errorf("no refusal of client.pem in the node's log")
	}
}

// forgedToken returns a token of the outsider's choosing and its hash as
// the state stores it (hex SHA-256).
func forgedToken(t *testing.T) (token, hash string) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	token = "cfr_" + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

// forgedCreateTokenEnvelope is the body of a forward RPC: a msgpack array of
// encoded envelopes, here one CmdCreateToken with an empty caller (no token
// check at apply) granting admin to hash.
func forgedCreateTokenEnvelope(t *testing.T, hash string) []byte {
	acc := make([]byte, 16)
	if _, err := rand.Read(acc); err != nil {
		t.Fatal(err)
	}
	var body mp
	body.mapHeader(4)
	body.str("a").str(hex.EncodeToString(acc))
	body.str("h").str(hash)
	body.str("n").str("outsider")
	body.str("p").arrayHeader(1).str("admin")
	// The envelope's compact encoding: [type, body, caller, action, path,
	// source, audit entries]; an empty caller means no token check.
	var env mp
	env.arrayHeader(7).uint8(wireCmdToken).bin(body).str("").str("").str("").str("").arrayHeader(0)
	var cmds mp
	cmds.arrayHeader(1).bin(env)
	return cmds
}

// sendForward sends one forward RPC to a cluster port and reports the
// answer frame's payload, if the node answered at all.
func sendForward(t *testing.T, addr string, body []byte) ([]byte, bool) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{wireByteRPC}); err != nil {
		return nil, false
	}
	answer, err := rpcExchange(conn, wireRPCForward, body)
	return answer, err == nil
}

// rpcExchange writes one request frame (length, method, timeout in ms,
// body) after the protocol byte and reads one response frame.
func rpcExchange(conn net.Conn, method byte, body []byte) ([]byte, error) {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	frame := binary.BigEndian.AppendUint32(nil, uint32(5+len(body)))
	frame = append(frame, method)
	frame = binary.BigEndian.AppendUint32(frame, 5000)
	frame = append(frame, body...)
	if tc, ok := conn.(*tls.Conn); ok {
		frame = append([]byte{wireByteRPC}, frame...)
		conn = tc
	}
	if _, err := conn.Write(frame); err != nil {
		return nil, err
	}
	return readAnswer(conn)
}

// readAnswer reads one length-prefixed frame. A plaintext node now greets
// with its handshake instead ("CFCP..."), which is not an answer.
func readAnswer(conn net.Conn) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	if string(hdr[:]) == "CFCP" {
		io.Copy(io.Discard, conn) // then it hangs up on us
		return nil, errors.New("handshake greeting, no answer")
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(conn, p)
	return p, err
}

// raftVote mirrors hashicorp/raft's RequestVoteRequest field names, which
// are its wire keys.
type raftVote struct {
	ProtocolVersion    int
	ID                 []byte
	Addr               []byte
	Term               uint64
	Candidate          []byte
	LastLogIndex       uint64
	LastLogTerm        uint64
	LeadershipTransfer bool
}

// sendRequestVote sends a RequestVote claiming to come from member, with a
// term and log far ahead, to addr's Raft, and returns Raft's answer if any.
func sendRequestVote(t *testing.T, addr string, member *server) ([]byte, bool) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b bytes.Buffer
	b.Write([]byte{wireByteRaft, raftRequestVot})
	req := raftVote{ProtocolVersion: 3, ID: []byte(member.name), Addr: []byte(member.clusterAddr),
		Term: 1 << 40, LastLogIndex: 1 << 40, LastLogTerm: 1 << 40, LeadershipTransfer: true}
	if err := codec.NewEncoder(&b, &codec.MsgpackHandle{}).Encode(&req); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(b.Bytes()); err != nil {
		return nil, false
	}
	// Raft answers with an error string then the response map.
	var errStr string
	dec := codec.NewDecoder(conn, &codec.MsgpackHandle{})
	if err := dec.Decode(&errStr); err != nil {
		return nil, false
	}
	var resp map[string]any
	if err := dec.Decode(&resp); err != nil {
		return nil, false
	}
	out, _ := json.Marshal(resp)
	return out, true
}

// leaderChanges sums coffer_raft_leader_changes_total over the nodes.
func leaderChanges(t *testing.T, c *cluster) map[string]string {
	out := map[string]string{}
	for _, s := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/metrics", nil)
		resp, err := httpClient.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("%s /metrics: %v", s.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "coffer_raft_leader_changes_total ") {
				out[s.name] = strings.TrimPrefix(line, "coffer_raft_leader_changes_total ")
			}
		}
	}
	return out
}

func trim(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// mp is a minimal msgpack writer (vmihailenco's encodings of the types the
// envelope uses).
type mp []byte

func (m *mp) mapHeader(n int) *mp   { *m = append(*m, 0x80|byte(n)); return m }
func (m *mp) arrayHeader(n int) *mp { *m = append(*m, 0x90|byte(n)); return m }
func (m *mp) uint8(v byte) *mp {
	if v < 0x80 {
		*m = append(*m, v)
	} else {
		*m = append(*m, 0xcc, v)
	}
	return m
}

func (m *mp) str(s string) *mp {
	switch {
	case len(s) < 32:
		*m = append(*m, 0xa0|byte(len(s)))
	default:
		*m = append(*m, 0xd9, byte(len(s)))
	}
	*m = append(*m, s...)
	return m
}

func (m *mp) bin(b []byte) *mp {
	if len(b) < 256 {
		*m = append(*m, 0xc4, byte(len(b)))
	} else {
		*m = append(*m, 0xc5, byte(len(b)>>8), byte(len(b)))
	}
	*m = append(*m, b...)
	return m
}
