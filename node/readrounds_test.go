package node

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/errs"
)

// TestReadRoundsCoalesce: requests that arrive while a round is being
// fetched share the next round (one fetch for all of them), and none of
// them gets the index of the round that was already running when it came.
func TestReadRoundsCoalesce(t *testing.T) {
	var fetches atomic.Uint64
	release := make(chan struct{})
	r := newReadRounds(nil, time.Minute, func(context.Context) (uint64, error) {
		<-release
		return fetches.Add(1) * 100, nil
	})
	first := make(chan uint64)
	go func() {
		idx, err := r.get(context.Background())
		if err != nil {
			t.Error(err)
		}
		first <- idx
	}()
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.running })

	const n = 20
	var wg sync.WaitGroup
	got := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			idx, err := r.get(context.Background())
			if err != nil {
				t.Error(err)
			}
			got[i] = idx
		}()
	}
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.next != nil && r.next.joined == n })
	close(release)
	if idx := <-first; idx != 100 {
		t.Fatalf("first request got %d, want 100", idx)
	}
	wg.Wait()
	for i, idx := range got {
		if idx != 200 {
			t.Fatalf("request %d got %d, want 200 (the round that started after it)", i, idx)
		}
	}
	if f := fetches.Load(); f != 2 {
		t.Fatalf("%d fetches for %d requests in two rounds, want 2", f, n+1)
	}
	// Idle again: the next request starts its own round.
	if idx, err := r.get(context.Background()); err != nil || idx != 300 {
		t.Fatalf("get after the rounds = %d, %v; want 300", idx, err)
	}
}

// TestReadRoundsErrorAndTimeout: a failed fetch fails its round's requests
// only, and a request whose context ends stops waiting with Unavailable.
func TestReadRoundsErrorAndTimeout(t *testing.T) {
	fail := errs.New(errs.Unavailable, "no leader")
	var calls atomic.Int32
	block := make(chan struct{})
	r := newReadRounds(nil, time.Minute, func(context.Context) (uint64, error) {
		switch calls.Add(1) {
		case 1:
			return 0, fail
		case 2:
			<-block
		}
		return 7, nil
	})
	if _, err := r.get(context.Background()); !errors.Is(err, fail) {
		t.Fatalf("get = %v, want the fetch's error", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.get(ctx)
	if e := errs.As(err); e == nil || e.Code != errs.Unavailable {
		t.Fatalf("get with an expired context = %v, want Unavailable", err)
	}
	close(block)
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return !r.running })
	if idx, err := r.get(context.Background()); err != nil || idx != 7 {
		t.Fatalf("get after recovery = %d, %v; want 7", idx, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		runtime.Gosched() // let the goroutines under test run
	}
}

// TestReadRoundsStop: when the node shuts down, waiting requests and the
// round's fetch end at once.
func TestReadRoundsStop(t *testing.T) {
	stop := make(chan struct{})
	fetchEnded := make(chan error, 1)
	r := newReadRounds(stop, time.Hour, func(ctx context.Context) (uint64, error) {
		<-ctx.Done()
		fetchEnded <- ctx.Err()
		return 0, ctx.Err()
	})
	got := make(chan error, 1)
	go func() {
		_, err := r.get(context.Background())
		got <- err
	}()
	waitFor(t, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.running })
	close(stop)
	select {
	case err := <-got:
		if e := errs.As(err); e == nil || e.Code != errs.Unavailable {
			t.Fatalf("get after shutdown = %v, want Unavailable", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("a waiting request outlived the shutdown")
	}
	select {
	case <-fetchEnded:
	case <-time.After(time.Minute):
		t.Fatal("the round's fetch outlived the shutdown")
	}
}
