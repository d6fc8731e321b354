// Package bench is Coffer's load generator (`coffer bench`): closed-loop
// HTTP clients running one workload against one or more nodes, reporting
// throughput, latency percentiles and errors by code.
package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Workloads.
const (
	Put      = "put"
	Get      = "get"
	Mixed    = "mixed"
	Generate = "generate"
	BatchGet = "batch-get"
)

// Config describes one run.
type Config struct {
	Targets     []string // base URLs; workers are spread over them
	Token       string
	Workload    string
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration
	ValueSize   int
	Keys        int
	ReadRatio   float64     // mixed: fraction of reads
	Consistency string      // reads: stale or leader
	BatchSize   int         // batch-get: paths per request
	Prefix      string      // secret path prefix
	TLS         *tls.Config // for https targets; nil trusts the system's roots

	keyJSON []byte // `"<Prefix>/k` as a JSON string without its closing quote
}

// Result is one run's figures.
type Result struct {
	Workload    string           `json:"workload"`
	Concurrency int              `json:"concurrency"`
	Targets     []string         `json:"targets"`
	Seconds     float64          `json:"seconds"`
	Ops         int64            `json:"ops"`
	OpsPerSec   float64          `json:"ops_per_sec"`
	P50Ms       float64          `json:"p50_ms"`
	P90Ms       float64          `json:"p90_ms"`
	P99Ms       float64          `json:"p99_ms"`
	MaxMs       float64          `json:"max_ms"`
	Errors      map[string]int64 `json:"errors"`
}

func (c *Config) defaults() error {
	if len(c.Targets) == 0 {
		return fmt.Errorf("no target node")
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.ValueSize <= 0 {
		c.ValueSize = 256
	}
	if c.Keys <= 0 {
		c.Keys = 1000
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 10
	}
	if c.Prefix == "" {
		c.Prefix = "/bench"
	}
	if c.ReadRatio == 0 {
		c.ReadRatio = 0.9
	}
	switch c.Workload {
	case Put, Get, Mixed, Generate, BatchGet:
	default:
		return fmt.Errorf("unknown workload %q (put, get, mixed, generate, batch-get)", c.Workload)
	}
	if c.Consistency != "" && c.Consistency != "stale" && c.Consistency != "leader" {
		return fmt.Errorf("consistency %q: want stale or leader", c.Consistency)
	}
	if c.ReadRatio < 0 || c.ReadRatio > 1 {
		return fmt.Errorf("read ratio %g: want a fraction between 0 and 1", c.ReadRatio)
	}
	for i, t := range c.Targets {
		c.Targets[i] = strings.TrimRight(t, "/")
		if _, err := newConn(c.Targets[i], c.Token, c.TLS); err != nil {
			return err
		}
	}
	k, err := json.Marshal(c.Prefix + "/k")
	if err != nil {
		return err
	}
	c.keyJSON = k[:len(k)-1]
	return nil
}

func (c *Config) path(i int) string { return fmt.Sprintf("%s/k%07d", c.Prefix, i) }

// appendPath appends the JSON string of path(i).
func (c *Config) appendPath(b []byte, i int) []byte {
	b = append(b, c.keyJSON...)
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(i), 10)
	for range 7 - len(d) {
		b = append(b, '0')
	}
	b = append(b, d...)
	return append(b, '"')
}

// Prepare creates the key set (with one value each) through the first
// target; existing secrets are kept.
func Prepare(ctx context.Context, c Config) error {
	if err := c.defaults(); err != nil {
		return err
	}
	return c.createAll(ctx, min(c.Concurrency, 32), c.Targets[:1])
}

func randomValue(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Run executes the workload and returns its figures (warm-up excluded).
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.defaults(); err != nil {
		return nil, err
	}
	value := base64.StdEncoding.EncodeToString(randomValue(c.ValueSize))
	start := time.Now()
	measureFrom := start.Add(c.Warmup)
	end := measureFrom.Add(c.Duration)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()

	type workerOut struct {
		lat  []time.Duration
		errs map[string]int64
	}
	outs := make([]workerOut, c.Concurrency)
	var wg sync.WaitGroup
	for w := 0; w < c.Concurrency; w++ {
		cn, err := newConn(c.Targets[w%len(c.Targets)], c.Token, c.TLS)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			defer cn.close()
			defer context.AfterFunc(runCtx, cn.abort)()
			rng := uint64(w)*0x9E3779B97F4A7C15 + 1
			out := workerOut{errs: map[string]int64{}}
			var body []byte
			for runCtx.Err() == nil {
				rng ^= rng << 13
				rng ^= rng >> 7
				rng ^= rng << 17
				var action string
				action, body = c.request(body[:0], rng, value)
				t0 := time.Now()
				code := cn.post(runCtx, action, body)
				if code == "Canceled" {
					break
				}
				if t0.Before(measureFrom) {
					continue
				}
				if code != "" {
					out.errs[code]++
				}
				out.lat = append(out.lat, time.Since(t0))
			}
			outs[w] = out
		}(w)
	}
	wg.Wait()
	res := &Result{Workload: c.Workload, Concurrency: c.Concurrency, Targets: c.Targets, Errors: map[string]int64{}}
	var all []time.Duration
	for _, o := range outs {
		all = append(all, o.lat...)
		for k, v := range o.errs {
			res.Errors[k] += v
		}
	}
	res.Seconds = time.Since(measureFrom).Seconds()
	if res.Seconds <= 0 {
		res.Seconds = c.Duration.Seconds()
	}
	res.Ops = int64(len(all))
	res.OpsPerSec = float64(res.Ops) / res.Seconds
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)-1))
		return float64(all[i].Microseconds()) / 1000
	}
	res.P50Ms, res.P90Ms, res.P99Ms, res.MaxMs = pct(.5), pct(.9), pct(.99), pct(1)
	return res, nil
}

// appendConsistency appends the reads' consistency field, if one is set
// (defaults checked it: stale or leader, nothing to escape).
func (c *Config) appendConsistency(b []byte) []byte {
	if c.Consistency == "" {
		return b
	}
	b = append(b, `,"consistency":"`...)
	b = append(b, c.Consistency...)
	return append(b, '"')
}

// request appends the body of the next request to b and returns the action.
func (c *Config) request(b []byte, rng uint64, value string) (string, []byte) {
	key := int(rng % uint64(c.Keys))
	read := func() (string, []byte) {
		b = append(b, `{"path":`...)
		b = c.appendPath(b, key)
		b = c.appendConsistency(b)
		return "getSecretValue", append(b, '}')
	}
	switch c.Workload {
	case Get:
		return read()
	case Mixed:
		if float64(rng%10000)/10000 < c.ReadRatio {
			return read()
		}
	case Generate:
		b = append(b, `{"path":`...)
		b = c.appendPath(b, key)
		return "generateSecret", append(b, '}')
	case BatchGet:
		b = append(b, `{"paths":[`...)
		seen := map[int]bool{}
		step := uint64(7919) // a prime: the walk visits every key unless Keys is its multiple
		if uint64(c.Keys)%step == 0 {
			step = 1
		}
		for i := 0; len(seen) < min(c.BatchSize, c.Keys); i++ {
			k := int((rng + uint64(i)*step) % uint64(c.Keys))
			if !seen[k] {
				if len(seen) > 0 {
					b = append(b, ',')
				}
				seen[k] = true
				b = c.appendPath(b, k)
			}
		}
		b = append(b, ']')
		b = c.appendConsistency(b)
		return "batchGetSecretValue", append(b, '}')
	}
	b = append(b, `{"path":`...)
	b = c.appendPath(b, key)
	b = append(b, `,"value":"`...)
	b = append(b, value...) // base64: nothing to escape
	return "putSecretValue", append(b, `"}`...)
}

// Format prints a result as one table row.
func Format(w io.Writer, r *Result) {
	errsTxt := "-"
	if len(r.Errors) > 0 {
		var parts []string
		for k, v := range r.Errors {
			parts = append(parts, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(parts)
		errsTxt = strings.Join(parts, ",")
	}
	fmt.Fprintf(w, "%-10s c=%-4d %10.0f ops/s  p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms  errors %s\n",
		r.Workload, r.Concurrency, r.OpsPerSec, r.P50Ms, r.P90Ms, r.P99Ms, r.MaxMs, errsTxt)
}

// PrepareSpread creates Keys secrets (one ValueSize value each) with
// Concurrency clients spread over every target: a bulk load.
func PrepareSpread(ctx context.Context, c Config) error {
	if err := c.defaults(); err != nil {
		return err
	}
	return c.createAll(ctx, c.Concurrency, c.Targets)
}

// createAll creates the Keys secrets with a value each, with workers
// clients spread over targets; existing secrets count as created.
func (c *Config) createAll(ctx context.Context, workers int, targets []string) error {
	value := randomValue(c.ValueSize)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		cn, err := newConn(targets[w%len(targets)], c.Token, c.TLS) // checked by defaults
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cn.close()
			for {
				i := int(next.Add(1) - 1)
				if i >= c.Keys || ctx.Err() != nil || firstErr.Load() != nil {
					return
				}
				body, _ := json.Marshal(map[string]any{"path": c.path(i), "value": value})
				for attempt := 0; ; attempt++ {
					code := cn.post(ctx, "createSecret", body)
					if code == "" || code == "AlreadyExists" {
						break
					}
					// A write whose answer was lost is retried: creating
					// an existing secret is AlreadyExists, which counts.
					if code != "Unavailable" && code != "NetworkError" || attempt > 20 {
						firstErr.CompareAndSwap(nil, fmt.Errorf("create %s: %s", c.path(i), code))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return nil
}
