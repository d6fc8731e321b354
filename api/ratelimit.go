package api

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/errs"
	"golang.org/x/time/rate"
)

// Rate is a token-bucket limit: PerSecond requests a second on average, up
// to Burst at once. The zero Rate is no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Enabled reports whether r limits anything.
func (r Rate) Enabled() bool { return r.PerSecond > 0 }

func (r Rate) String() string {
	if !r.Enabled() {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + ":" + strconv.Itoa(r.Burst)
}

// ParseRate reads "RATE[:BURST]" (requests per second, and the burst; the
// burst defaults to twice the rate, at least 1). "0" is no limit.
func ParseRate(s string) (Rate, error) {
	rs, bs, hasBurst := strings.Cut(strings.TrimSpace(s), ":")
	r, err := strconv.ParseFloat(rs, 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return Rate{}, fmt.Errorf("%q is not RATE[:BURST] (requests per second, e.g. 500:1000; 0 for no limit)", s)
	}
	if r == 0 {
		return Rate{}, nil
	}
	burst := int(math.Max(1, math.Ceil(2*r)))
	if hasBurst {
		b, err := strconv.Atoi(bs)
		if err != nil || b < 1 {
			return Rate{}, fmt.Errorf("%q: the burst must be a whole number of requests, at least 1", s)
		}
		burst = b
	}
	return Rate{PerSecond: r, Burst: burst}, nil
}

// Set makes *Rate a flag.Value.
func (r *Rate) Set(s string) error {
	v, err := ParseRate(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// maxLimiterKeys bounds the state of one keyed limiter: a client rotating
// source addresses (or tokens) can't grow it further; keys beyond it share
// one overflow bucket until idle keys expire.
const maxLimiterKeys = 1 << 16

const limiterShards = 16

// keyedLimiter keeps one token bucket per key (a source address or a token
// accessor), sharded to keep lock contention off the request path. A key
// whose bucket has been idle long enough to be full again is forgotten:
// dropping it changes nothing.
type keyedLimiter[K comparable] struct {
	rate     Rate
	idle     time.Duration // a bucket idle this long is full
	seed     maphash.Seed
	shards   [limiterShards]limiterShard[K]
	overflow *rate.Limiter
}

type limiterShard[K comparable] struct {
	mu        sync.Mutex
	m         map[K]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	last time.Time
}

func newKeyedLimiter[K comparable](r Rate) *keyedLimiter[K] {
	if !r.Enabled() {
		return nil
	}
	idle := time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	k := &keyedLimiter[K]{rate: r, idle: max(idle, time.Second), seed: maphash.MakeSeed(),
		overflow: rate.NewLimiter(rate.Limit(r.PerSecond), r.Burst)}
	for i := range k.shards {
		k.shards[i].m = map[K]*limiterEntry{}
	}
	return k
}

// allow takes one request from key's bucket; when it is empty it returns
// how long until one is available.
func (k *keyedLimiter[K]) allow(key K, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	sh := &k.shards[maphash.Comparable(k.seed, key)%limiterShards]
	sh.mu.Lock()
	e, ok := sh.m[key]
	if !ok {
		if len(sh.m) >= maxLimiterKeys/limiterShards && now.Sub(sh.lastSweep) >= time.Second {
			sh.lastSweep = now
			for kk, ee := range sh.m {
				if now.Sub(ee.last) >= k.idle {
					delete(sh.m, kk)
				}
			}
		}
		if len(sh.m) >= maxLimiterKeys/limiterShards {
			sh.mu.Unlock()
			return k.take(k.overflow, now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(k.rate.PerSecond), k.rate.Burst)}
		sh.m[key] = e
	}
	e.last = now
	lim := e.lim
	sh.mu.Unlock()
	return k.take(lim, now)
}

func (k *keyedLimiter[K]) take(lim *rate.Limiter, now time.Time) (bool, time.Duration) {
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	return false, time.Duration(missing / k.rate.PerSecond * float64(time.Second))
}

// size is the number of keys held (for tests).
func (k *keyedLimiter[K]) size() int {
	n := 0
	for i := range k.shards {
		k.shards[i].mu.Lock()
		n += len(k.shards[i].m)
		k.shards[i].mu.Unlock()
	}
	return n
}

// sourceKey is the address a per-source limit counts against: an IPv4
// address, or an IPv6 address's /64 (one host usually holds a whole /64, so
// counting single IPv6 addresses would be no limit at all).
func sourceKey(a netip.Addr) netip.Addr {
	if a.Is6() && !a.Is4In6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a.Unmap()
}

// exemptFromRateLimit: health checks and metrics scrapes are never
// throttled (SPEC §6), so load balancers and monitoring keep working.
func exemptFromRateLimit(path string) bool {
	return path == "/v1/sys/health" || path == "/metrics"
}

// rateLimited answers RateLimited 429 with Retry-After in whole seconds.
func rateLimited(w http.ResponseWriter, what string, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	rateLimitedTotal.WithLabelValues(what).Inc()
	writeError(w, errs.New(errs.RateLimited, "too many requests from this %s; retry after %d s", what, secs))
}
