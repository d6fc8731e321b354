package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/cofferhq/coffer/apitypes"
	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/node"
	"github.com/hashicorp/go-hclog"
)

// requestTimeout bounds how long any action may take.
const requestTimeout = 30 * time.Second

// Config configures the HTTP API.
type Config struct {
	// TrustedProxies are peers whose X-Forwarded-For header is honoured.
	TrustedProxies []netip.Prefix
	// MaxRestoreBytes bounds a snapshot upload (default 1 GiB).
	MaxRestoreBytes int64
	// Extra handlers mounted beside the API (e.g. /metrics).
	Extra map[string]http.Handler
	// Limits are the HTTP timeouts, caps and rate limits.
	Limits Limits
}

// Server serves the HTTP API of one node.
type Server struct {
	n       *node.Node
	cfg     Config
	logger  hclog.Logger
	mux     *http.ServeMux
	actions map[string]action

	perSource *keyedLimiter[netip.Addr] // nil: no limit
	perToken  *keyedLimiter[string]     // by token accessor, after authentication
	restoring chan struct{}             // holds a token while a restore runs: one at a time
}

// action is one POST /v1/<name> handler: it decodes its own body from
// raw (strictly) and returns the answer to encode.
type action struct {
	handle func(ctx context.Context, rc *reqCtx, raw []byte) (any, error)
	event  string // audit event of a request that fails before its own entry
	public bool   // no token needed
}

// New returns the API server for n.
func New(n *node.Node, cfg Config) *Server {
	if cfg.MaxRestoreBytes == 0 {
		cfg.MaxRestoreBytes = 1 << 30
	}
	cfg.Limits = cfg.Limits.withDefaults()
	s := &Server{n: n, cfg: cfg, logger: n.Logger().Named("api"), mux: http.NewServeMux(),
		perSource: newKeyedLimiter[netip.Addr](cfg.Limits.PerSource), perToken: newKeyedLimiter[string](cfg.Limits.PerToken),
		restoring: make(chan struct{}, 1)}
	s.actions = s.routes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errs.New(errs.NotFound, "no such endpoint %q (actions are POST /v1/<action>)", r.URL.Path))
	})
	s.mux.HandleFunc("/v1/", s.serveAction)
	s.mux.HandleFunc("/v1/sys/health", s.serveHealth)
	s.mux.HandleFunc("/v1/sys/snapshot", s.serveSnapshot)
	s.mux.HandleFunc("/v1/sys/restore", s.serveRestore)
	for p, h := range cfg.Extra {
		s.mux.Handle(p, h)
	}
	return s
}

// Handler returns the http.Handler of the API.
func (s *Server) Handler() http.Handler { return s }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Revealed values are ephemeral: no proxy or browser may keep an answer.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p) // a deliberate abort (a broken stream): let net/http drop the connection
			}
			s.logger.Error("panic serving request", "path", r.URL.Path, "panic", fmt.Sprint(p))
			writeError(w, errs.New(errs.Internal, "internal error"))
		}
	}()
	// Per source first, before anything else is looked at (an unknown
	// token costs a leader round to refuse).
	if s.perSource != nil && !exemptFromRateLimit(r.URL.Path) {
		if ok, wait := s.perSource.allow(sourceKey(s.sourceAddr(r)), time.Now()); !ok {
			rateLimited(w, "source", wait)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// authenticateFirst resolves the caller from the headers alone, before a
// byte of the body is read (SPEC §6), and applies the per-token rate limit.
// It writes the error answer itself and returns nil on failure.
func (s *Server) authenticateFirst(w http.ResponseWriter, r *http.Request, name string, public bool) *reqCtx {
	rc, err := s.newReqCtx(r.Context(), r, name, public)
	if err != nil {
		// The body is left unread, and the connection is closed after the
		// answer instead of draining it (a slow client would hold it).
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		writeError(w, err)
		return nil
	}
	if rc.token != nil {
		if ok, wait := s.perToken.allow(rc.token.Accessor, time.Now()); !ok {
			rateLimited(w, "token", wait)
			return nil
		}
	}
	return rc
}

func (s *Server) serveAction(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/v1/")
	act, ok := s.actions[name]
	if !ok {
		writeError(w, errs.New(errs.NotFound, "unknown action %q", name))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeErrorStatus(w, http.StatusMethodNotAllowed, errs.New(errs.InvalidArgument, "use POST for /v1/%s", name))
		return
	}
	rc := s.authenticateFirst(w, r, name, act.public)
	if rc == nil {
		return
	}
	s.setBodyDeadline(w, apitypes.MaxBodyBytes)
	raw, err := readBody(w, r, apitypes.MaxBodyBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	start := time.Now()
	resp, err := act.handle(ctx, rc, raw)
	observe(name, err, start)
	clear(raw) // the body may hold a value
	if err != nil {
		s.auditFailure(ctx, rc, act.event, err)
		writeError(w, err)
		return
	}
	if v, ok := resp.(*apitypes.GetSecretValueResponse); ok {
		writeSecretValue(w, v)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// auditFailure records a request that reached its action and failed before
// any of its audit entries was committed (bad input, say): every such
// request leaves one entry. Unavailable failures are not retried into the
// log (there is no quorum to write to).
func (s *Server) auditFailure(ctx context.Context, rc *reqCtx, event string, err error) {
	if rc.audited || rc.token == nil || errs.CodeOf(err) == errs.Unavailable {
		return
	}
	_ = s.failed(ctx, rc, event, "", err)
}

// readBody reads at most limit bytes; a larger body is TooLarge.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, limit)
	raw, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errs.New(errs.TooLarge, "request body exceeds %d bytes", limit)
		}
		return nil, errs.New(errs.InvalidArgument, "read request body: %v", err)
	}
	return raw, nil
}

// decode parses a JSON body strictly (SPEC §2, §6 "JSON"): unknown fields,
// duplicate keys, wrong types, trailing data, invalid UTF-8 and anything but
// canonical padded base64 are InvalidArgument. An empty body is {}.
func decode(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if err := checkStrict(raw, reflect.TypeOf(v)); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errs.New(errs.InvalidArgument, "malformed request: %s", describeJSONError(err))
	}
	return checkExplicitZero(raw, v)
}

// describeJSONError names what was wrong without echoing the input (which
// may contain a value).
func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return "the body must be a JSON object"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case strings.Contains(err.Error(), "illegal base64"):
		return "a value is not valid base64 (standard alphabet, with padding)"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "truncated JSON"
	}
	return "invalid JSON"
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array (or base64 string)"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "a number"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError is the one place where errors become HTTP answers.
func writeError(w http.ResponseWriter, err error) {
	e := errs.As(err)
	writeErrorStatus(w, errs.HTTPStatus(e.Code), e)
}

func writeErrorStatus(w http.ResponseWriter, status int, e *errs.Error) {
	writeJSON(w, status, apitypes.ErrorBody{Error: apitypes.ErrorDetail{Code: string(e.Code), Message: e.Message}})
}
