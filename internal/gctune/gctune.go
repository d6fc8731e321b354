// Package gctune bounds the Go heap's headroom for a server whose live heap
// is mostly long-lived state (the secrets).
//
// Go's default (GOGC=100) lets the heap grow to twice the live heap before
// collecting: 100 MB of garbage at 100 MB of state, but 1 GB of garbage at
// 1 GB of state, when the garbage comes from requests, not from the state;
// and a small state is collected very often (at 20 MB live, every 20 MB
// allocated: a quarter of a node's CPU under load). After every collection
// the tuner sets the GC percentage so that the headroom is 256 MiB (at most
// 8 times the live heap), and a quarter of the live heap above 1 GiB: a node
// holding a million secrets (~750 MB live) peaks near 1 GB instead of
// 1.5 GB, a small one near 300 MB, and both collect rarely.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

const (
	floorHeadroom = 256 << 20
	minPercent    = 25
	maxPercent    = 800
)

// Percent is the GC percentage giving the headroom above for live bytes.
func Percent(live uint64) int { return percent(live, floorHeadroom) }

func percent(live, floor uint64) int {
	if live == 0 {
		return maxPercent
	}
	return int(max(minPercent, min(maxPercent, floor*100/live)))
}

// Start installs the tuner, unless the operator chose a policy with GOGC or
// GOMEMLIMIT. It returns whether it did.
func Start() bool {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	start(floorHeadroom)
	return true
}

func start(floor uint64) *tuner {
	t := &tuner{floor: floor, cur: -1, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.arm()
	return t
}

type tuner struct {
	floor  uint64
	cur    int // the percentage set last; -1 before the first run
	runs   atomic.Int64
	sample []metrics.Sample
}

// sentinel is what the tuner hangs its finalizer on. It holds a pointer so
// that it is never a "tiny" allocation: those share a 16-byte block with
// other small pointer-free objects, and one long-lived neighbour (a string of
// the state) kept the block alive and stopped the tuner for good.
type sentinel struct{ t *tuner }

// arm schedules a run after the next collection: the finalizer of an
// unreachable object runs once a GC cycle has found it garbage.
func (t *tuner) arm() {
	runtime.SetFinalizer(&sentinel{t: t}, func(s *sentinel) { s.t.tune(); s.t.arm() })
}

func (t *tuner) tune() {
	t.runs.Add(1)
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	if p := percent(t.sample[0].Value.Uint64(), t.floor); p != t.cur {
		t.cur = p
		debug.SetGCPercent(p)
	}
}
