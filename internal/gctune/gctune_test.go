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
		time.Sleep(time.Millisecond) // let the finalizer goroutine run
	}
}

// The tuner follows the live heap after collections, both ways.
func TestTunerFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	live := make([][]byte, 0, 64)
	for range 64 {
		live = append(live, make([]byte, 1<<20))
	}
	start(8 << 20) // a 8 MiB floor: 64 MiB live is well past it
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
