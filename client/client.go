// Package client is the Go SDK for Coffer's HTTP API (SPEC §2).
//
// Every action is a POST /v1/<action> with a JSON body and the caller's token
// in the Authorization header; no value, token or path ever travels in a URL.
// Failures are returned as *errs.Error: answers of the server keep their code
// and message, network failures are Unavailable. The client remembers the
// highest `index` of all answers (LastIndex), for read-your-writes with
// min_index. Retries are opt-in (WithRetry) and never repeat a change.
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
)

// Environment variables read by FromEnv (SPEC §3).
const (
	EnvAddr   = "COFFER_ADDR"
	EnvToken  = "COFFER_TOKEN"
	EnvCACert = "COFFER_CACERT"
)

// DefaultAddr is the address used when COFFER_ADDR is not set.
const DefaultAddr = "http://127.0.0.1:7700"

const (
	maxErrorBody  = 1 << 20   // error answers are small
	maxAnswerBody = 256 << 20 // generous bound for list and batch answers
	baseRetryWait = 100 * time.Millisecond
)

// Client calls one Coffer node. Create it with New or FromEnv.
type Client struct {
	base      string // scheme://host[/path], no trailing slash
	token     string
	hc        *http.Client
	userAgent string

	maxAttempts int
	maxWait     time.Duration
	baseWait    time.Duration

	lastIndex atomic.Uint64
}

// Option configures a Client.
type Option func(*settings) error

type settings struct {
	hc          *http.Client
	caFile      string
	userAgent   string
	maxAttempts int
	maxWait     time.Duration
}

// WithHTTPClient makes the Client send its requests with hc. When it is
// combined with WithCACertFile, hc's transport (nil or an *http.Transport) is
// cloned and given the CA; hc itself is never modified.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) error {
		if hc == nil {
			return errs.New(errs.InvalidArgument, "client: nil http client")
		}
		s.hc = hc
		return nil
	}
}

// WithCACertFile trusts the PEM certificates of file (and only them) for
// https addresses. An empty file name is ignored, so the value of
// COFFER_CACERT can be passed as is.
func WithCACertFile(file string) Option {
	return func(s *settings) error {
		s.caFile = file
		return nil
	}
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(s *settings) error {
		s.userAgent = ua
		return nil
	}
}

// WithRetry retries failed requests, up to maxAttempts attempts in all, with
// exponential backoff and jitter starting at 100ms; maxWait caps one wait
// between two attempts (2s when zero or negative). Retries are off by default
// (maxAttempts 1).
//
// Only Unavailable failures are retried, and only when a retry can't apply a
// change twice:
//   - a request that could not be sent (the connection was refused or could
//     not be established) is retried for every action;
//   - an Unavailable answer of the server (no leader, sealed, catching up) is
//     retried for every action: per SPEC §2 a request that fails changes
//     nothing;
//   - other network failures (connection reset, answer cut off) may happen
//     after the server processed the request, so they are retried only for
//     read actions (describe, list, get, batch get, key, token and policy
//     listings, audit queries, cluster listing, snapshot).
//
// RateLimited, other codes and certificate errors are never retried. Health
// is never retried; Restore only when its body is an io.Seeker.
func WithRetry(maxAttempts int, maxWait time.Duration) Option {
	return func(s *settings) error {
		if maxAttempts < 1 {
			maxAttempts = 1
		}
		if maxWait <= 0 {
			maxWait = 2 * time.Second
		}
		s.maxAttempts, s.maxWait = maxAttempts, maxWait
		return nil
	}
}

// New returns a Client for the node at addr ("http://host:port",
// "https://host:port" or "host:port", which means http) authenticating with
// token (may be empty for the unauthenticated sys actions).
func New(addr, token string, opts ...Option) (*Client, error) {
	s := settings{maxAttempts: 1, maxWait: 2 * time.Second}
	for _, o := range opts {
		if err := o(&s); err != nil {
			return nil, err
		}
	}
	base, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	token = strings.TrimSpace(token)
	if strings.ContainsAny(token, "\r\n") {
		return nil, errs.New(errs.InvalidArgument, "client: token contains a line break")
	}
	hc, err := httpClient(s.hc, s.caFile)
	if err != nil {
		return nil, err
	}
	return &Client{
		base:        base,
		token:       token,
		hc:          hc,
		userAgent:   s.userAgent,
		maxAttempts: s.maxAttempts,
		maxWait:     s.maxWait,
		baseWait:    baseRetryWait,
	}, nil
}

// FromEnv returns a Client configured from COFFER_ADDR (default DefaultAddr),
// COFFER_TOKEN and COFFER_CACERT; opts are applied after the environment.
func FromEnv(opts ...Option) (*Client, error) {
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		addr = DefaultAddr
	}
	all := append([]Option{WithCACertFile(os.Getenv(EnvCACert))}, opts...)
	return New(addr, os.Getenv(EnvToken), all...)
}

// Addr returns the base address requests are sent to.
func (c *Client) Addr() string { return c.base }

// LastIndex returns the highest `index` seen in any answer of this Client
// (0 if none yet). Pass it as min_index to read your writes on a follower.
func (c *Client) LastIndex() uint64 { return c.lastIndex.Load() }

func (c *Client) noteIndex(i uint64) {
	for {
		cur := c.lastIndex.Load()
		if i <= cur || c.lastIndex.CompareAndSwap(cur, i) {
			return
		}
	}
}

func parseAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errs.New(errs.InvalidArgument, "client: empty address")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", errs.New(errs.InvalidArgument, "client: bad address %q: %v", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", errs.New(errs.InvalidArgument, "client: address %q: scheme must be http or https", addr)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errs.New(errs.InvalidArgument, "client: address %q must be scheme://host:port[/path]", addr)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

func httpClient(given *http.Client, caFile string) (*http.Client, error) {
	if given != nil && caFile == "" {
		return given, nil
	}
	var hc http.Client
	var tr *http.Transport
	if given != nil {
		hc = *given
		switch t := given.Transport.(type) {
		case nil:
			tr = defaultTransport()
		case *http.Transport:
			tr = t.Clone()
		default:
			return nil, errs.New(errs.InvalidArgument, "client: a CA file needs an *http.Transport, the http client has %T", t)
		}
	} else {
		tr = defaultTransport()
		// SPEC §2: the API never redirects; following one would resend the
		// body (maybe a secret value) somewhere else.
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	if caFile != "" {
		pool, err := loadCAFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if tr.TLSClientConfig != nil {
			cfg = tr.TLSClientConfig.Clone()
		}
		cfg.RootCAs = pool
		tr.TLSClientConfig = cfg
	}
	hc.Transport = tr
	return &hc, nil
}

// TLSConfigForCAFile returns a client TLS configuration trusting the PEM
// certificates of file (and only them), or nil for an empty file name.
func TLSConfigForCAFile(file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	pool, err := loadCAFile(file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

func loadCAFile(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "client: CA file: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errs.New(errs.InvalidArgument, "client: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

func defaultTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	return tr
}

// Do calls POST /v1/<action> with req (nil sends {}) encoded as JSON and
// decodes the answer into resp (nil discards it; a *json.RawMessage keeps it
// as sent). action may name a cluster action such as "sys/cluster". It is
// the generic form of the typed methods, for actions whose types are not in
// apitypes.
func (c *Client) Do(ctx context.Context, action string, req, resp any) error {
	if err := checkAction(action); err != nil {
		return err
	}
	body := []byte("{}")
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return errs.New(errs.InvalidArgument, "client: encoding %s request: %v", action, err)
		}
		body = b
	}
	hr, err := c.send(ctx, http.MethodPost, "/v1/"+action, "application/json", bytesBody(body), isRead(action))
	if err != nil {
		return err
	}
	defer drainClose(hr.Body)
	return c.decodeAnswer(hr, action, resp)
}

func checkAction(action string) error {
	ok := action != "" && !strings.HasPrefix(action, "/") && !strings.HasSuffix(action, "/") && !strings.Contains(action, "//")
	for _, r := range action {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/') {
			ok = false
		}
	}
	if !ok {
		return errs.New(errs.InvalidArgument, "client: bad action name %q", action)
	}
	return nil
}

// readActions are the actions a retry can't turn into a second change.
var readActions = map[string]bool{
	"describeSecret": true, "listSecrets": true, "getSecretValue": true, "batchGetSecretValue": true,
	"describeKey": true, "listKeys": true, "listKeyBindings": true,
	"listTokens": true, "whoami": true, "getPolicy": true, "listPolicies": true,
	"queryAudit": true, "verifyAudit": true,
	"sys/cluster": true, "sys/health": true, "sys/snapshot": true,
}

func isRead(action string) bool { return readActions[action] }

// noAuthPaths need no token, so none is sent to them.
var noAuthPaths = map[string]bool{"/v1/sys/init": true, "/v1/sys/health": true}

func (c *Client) decodeAnswer(hr *http.Response, action string, resp any) error {
	data, err := io.ReadAll(io.LimitReader(hr.Body, maxAnswerBody+1))
	if err != nil {
		return errs.New(errs.Unavailable, "reading %s answer from %s: %v", action, c.base, err)
	}
	if len(data) > maxAnswerBody {
		return errs.New(errs.Internal, "%s answer from %s is larger than %d bytes", action, c.base, maxAnswerBody)
	}
	if resp == nil && len(bytes.TrimSpace(data)) == 0 {
		return nil // an empty answer is tolerated where nothing is expected
	}
	var idx struct {
		Index *uint64 `json:"index"`
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return errs.New(errs.Internal, "malformed %s answer from %s: %v", action, c.base, err)
	}
	if idx.Index != nil {
		c.noteIndex(*idx.Index)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return errs.New(errs.Internal, "malformed %s answer from %s: %v", action, c.base, err)
	}
	return nil
}

// body produces a fresh request body for each attempt; ok is false when it
// can't (a consumed stream), which ends retrying.
type body func() (io.Reader, bool)

func bytesBody(b []byte) body {
	return func() (io.Reader, bool) { return bytes.NewReader(b), true }
}

func streamBody(r io.Reader) body {
	first := true
	start := int64(-1)
	if s, ok := r.(io.Seeker); ok {
		if pos, err := s.Seek(0, io.SeekCurrent); err == nil {
			start = pos
		}
	}
	return func() (io.Reader, bool) {
		if first {
			first = false
			return r, true
		}
		if start < 0 {
			return nil, false
		}
		if _, err := r.(io.Seeker).Seek(start, io.SeekStart); err != nil {
			return nil, false
		}
		return r, true
	}
}

// send performs the request, retrying as documented on WithRetry, and
// returns a 2xx answer or an *errs.Error.
func (c *Client) send(ctx context.Context, method, path, ctype string, b body, read bool) (*http.Response, error) {
	for attempt := 1; ; attempt++ {
		r, ok := b()
		if !ok {
			return nil, errs.New(errs.Unavailable, "%s %s: request body can't be sent again", method, path)
		}
		hr, err := c.attempt(ctx, method, path, ctype, r)
		var e *errs.Error
		retry := false
		switch {
		case err != nil:
			e = c.netError(ctx, method, path, err)
			retry = ctx.Err() == nil && (notSent(err) || read && !isCertError(err))
		case hr.StatusCode >= 200 && hr.StatusCode < 300:
			return hr, nil
		default:
			e = decodeError(hr)
			drainClose(hr.Body)
			retry = e.Code == errs.Unavailable
		}
		if !retry || attempt >= c.maxAttempts {
			return nil, e
		}
		if err := c.sleep(ctx, attempt); err != nil {
			return nil, e
		}
	}
}

func (c *Client) attempt(ctx context.Context, method, path, ctype string, r io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" && !noAuthPaths[path] {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return c.hc.Do(req)
}

func (c *Client) sleep(ctx context.Context, attempt int) error {
	d := c.baseWait << min(attempt-1, 20)
	if d > c.maxWait || d <= 0 {
		d = c.maxWait
	}
	d = d/2 + rand.N(d/2+1) // jitter in [d/2, d]
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// notSent reports whether err proves the request never reached the server.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func isCertError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci)
}

func (c *Client) netError(ctx context.Context, method, path string, err error) *errs.Error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if ctx.Err() != nil {
		return errs.New(errs.Unavailable, "%s %s%s: request canceled: %v", method, c.base, path, context.Cause(ctx))
	}
	return errs.New(errs.Unavailable, "%s %s%s: %v", method, c.base, path, err)
}

// decodeError turns a non-2xx answer into an *errs.Error; bodies that are not
// a Coffer error become Internal with the HTTP status.
func decodeError(hr *http.Response) *errs.Error {
	data, _ := io.ReadAll(io.LimitReader(hr.Body, maxErrorBody))
	var eb apitypes.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code == "" {
		return errs.New(errs.Internal, "unexpected answer: HTTP %s", statusText(hr))
	}
	code := errs.Code(eb.Error.Code)
	if !errs.KnownCode(code) {
		return errs.New(errs.Internal, "unknown error code %q (HTTP %s): %s", eb.Error.Code, statusText(hr), eb.Error.Message)
	}
	return &errs.Error{Code: code, Message: eb.Error.Message}
}

func statusText(hr *http.Response) string {
	if hr.Status != "" {
		return hr.Status
	}
	return fmt.Sprintf("%d %s", hr.StatusCode, http.StatusText(hr.StatusCode))
}

func drainClose(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	_ = rc.Close()
}
