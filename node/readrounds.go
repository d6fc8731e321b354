package node

import (
	"context"
	"sync"
	"time"

	"github.com/cofferhq/coffer/errs"
)

// readRounds coalesces concurrent read-index requests into rounds, as etcd
// batches its linearizable reads: a request waits for the first round that
// starts after it arrived, so the index it gets was confirmed by the leader
// after the request began (all that linearizability asks), and a round
// costs one fetch however many requests share it. Without it every
// `consistency: leader` read on a follower cost an RPC to the leader and a
// VerifyLeader there, each with its own heartbeat notifications.
type readRounds struct {
	fetch func(context.Context) (uint64, error)
	// timeout is the deadline of the ctx each fetch gets (a follower's RPC
	// honours it; the leader's Raft futures end when leadership is lost),
	// and base is cancelled when the node shuts down. Waiters also honour
	// their own ctx.
	timeout time.Duration
	base    context.Context

	mu      sync.Mutex
	running bool       // a round is being fetched
	next    *readRound // the round that starts after it, collecting requests
}

type readRound struct {
	done   chan struct{} // closed when idx and err are set
	idx    uint64
	err    error
	joined int // requests sharing this round
}

// newReadRounds returns rounds of fetch that stop when stop is closed (a
// nil stop: never).
func newReadRounds(stop <-chan struct{}, timeout time.Duration, fetch func(context.Context) (uint64, error)) *readRounds {
	r := &readRounds{fetch: fetch, timeout: timeout, base: context.Background()}
	if stop != nil {
		base, cancel := context.WithCancel(context.Background())
		r.base = base
		go func() {
			<-stop
			cancel()
		}()
	}
	return r
}

// get returns a read index confirmed after the call began.
func (r *readRounds) get(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	if r.next == nil {
		r.next = &readRound{done: make(chan struct{})}
	}
	rd := r.next
	rd.joined++
	if !r.running {
		r.running, r.next = true, nil
		go r.run(rd)
	}
	r.mu.Unlock()
	select {
	case <-rd.done:
		return rd.idx, rd.err
	case <-ctx.Done():
		return 0, errs.New(errs.Unavailable, "confirming the read index with the leader: %v", ctx.Err())
	case <-r.base.Done():
		return 0, errs.New(errs.Unavailable, "node is shutting down")
	}
}

// run fetches rd, then every round that gathered requests meanwhile.
func (r *readRounds) run(rd *readRound) {
	for rd != nil {
		ctx, cancel := context.WithTimeout(r.base, r.timeout)
		rd.idx, rd.err = r.fetch(ctx)
		cancel()
		close(rd.done)
		r.mu.Lock()
		rd, r.next = r.next, nil
		r.running = rd != nil
		r.mu.Unlock()
	}
}
