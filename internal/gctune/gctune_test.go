package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 800}, {10 << 20, 800}, {32 << 20, 800}, {64 << 20, 400}, {256 << 20, 100}, {512 << 20, 50}, {768 << 20, 33}, {1 << 30, 25}, {8 << 30, 25},
	} {
		if got := Percent(c.live); got != c.want {
			t.Errorf("Percent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// waitGOGC collects until the tuner has set a percentage that ok accepts
// (it runs after a GC, on the finalizer goroutine).
func waitGOGC(t *testing.T, want string, ok func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC %d, want %s", gogc(), want)
		}
		runtime.GC()
		runtime.Gosched() // let the finalizer goroutine run
	}
}

// The tuner follows the live heap after collections, both ways.
func TestTunerFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 1<<20))
	}
	_ = start(8 << 20) // a 8 MiB floor: 64 MiB live is well past it
	waitGOGC(t, "the minimum", func(p int) bool { return p == minPercent })
	runtime.KeepAlive(live)
	live = nil
	// A few MiB live (the test binary's) against the 8 MiB floor.
	waitGOGC(t, "over 100", func(p int) bool { return p > 100 })
}

func TestStartLeavesAnOperatorsChoice(t *testing.T) {
	t.Setenv("GOGC", "200")
	if Start() {
		t.Fatal("tuner started although GOGC is set")
	}
}

var keep [][]byte

// The tuner runs after every collection, however the heap around its
// sentinel is used: small pointer-free objects that live on (most of a
// node's state) once kept it from ever running again.
func TestTunerRunsAfterEveryCollection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := start(8 << 20)
	for cycle := range 30 {
		for range 10000 {
			keep = append(keep, make([]byte, 1+cycle%15)) // tiny, long-lived
		}
		before := tu.runs.Load()
		deadline := time.Now().Add(5 * time.Second)
		for tu.runs.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: the tuner did not run after a collection", cycle)
			}
			runtime.GC()
			runtime.Gosched() // let the finalizer goroutine run
		}
	}
	keep = nil
}
