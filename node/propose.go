package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/errs"
	"github.com/cofferhq/coffer/fsm"
	"github.com/hashicorp/raft"
	"github.com/vmihailenco/msgpack/v5"
)

// Group commit limits: one Raft entry carries at most this many commands or
// bytes. The leader has at most leaderInFlight batches in Raft, so commands
// that arrive while the log is busy coalesce into the next batch: one at a
// time made the largest batches and the least CPU per command (with two,
// reads on followers took 145-151 µs of CPU each and ran at ~9,000/s, with
// one 119-128 µs and ~10,500/s; with four, 181-187 µs and ~7,600/s).
// A follower only forwards its batches, which the leader coalesces again,
// so it may have forwardInFlight of them on the way: with one, a follower's
// second request waited for the whole round trip of its first, and stale
// reads at 4 and 16 clients ran at 493 and 1,876/s instead of 891 and
// 2,652/s (64 clients: no change).
//
// Under load a batch also waits up to commitDelay for more commands (see
// fill): on stale follower reads at 64 clients that made 12 % more reads
// per second with one Raft entry per ~25 reads instead of ~15; busyBatch
// keeps single clients from ever waiting. (All measured 2026-12-01,
// docs/BENCHMARKS.md.)
const (
	maxBatchCmds    = 1024
	maxBatchBytes   = 4 << 20
	leaderInFlight  = 1
	forwardInFlight = 8
	commitDelay     = 500 * time.Microsecond // ~1.1 ms in effect on an idle node: Go's timers wake in whole ms there
	busyBatch       = 16
	idleReset       = 10 * time.Millisecond // a pause this long ends being busy
	applyTimeout    = 10 * time.Second
)

type proposal struct {
	cmd  []byte // an encoded fsm.Envelope
	size int
	done chan fsm.Result
}

// proposer coalesces concurrent commands into batches and sends each batch
// to Raft (on the leader) or to the leader (on a follower). Every command
// still gets its own result.
type proposer struct {
	n     *Node
	queue chan *proposal
	freed chan struct{} // one value per batch answered
	stop  chan struct{}
	delay time.Duration // commitDelay; tests lengthen it
}

func newProposer(n *Node) *proposer {
	p := &proposer{n: n, queue: make(chan *proposal, 4096), freed: make(chan struct{}, max(leaderInFlight, forwardInFlight)), stop: make(chan struct{}), delay: commitDelay}
	n.goLoop(p.loop)
	return p
}

func (p *proposer) close() { close(p.stop) }

// Messages of the Unavailable errors that prove a command was not
// submitted to Raft: Propose retries those while an election settles.
const (
	msgNoLeader     = "no leader: the cluster has no quorum or is electing one"
	msgNotLeader    = "not the leader (leadership moved); retry"
	msgNotSubmitted = "lost leadership before the write was submitted; retry"
)

// notSubmitted reports whether err proves its command never reached Raft.
func notSubmitted(e *errs.Error) bool {
	return e != nil && e.Code == errs.Unavailable &&
		(e.Message == msgNoLeader || e.Message == msgNotLeader || e.Message == msgNotSubmitted)
}

// electionWait bounds how long Propose waits for a leader to appear.
const electionWait = 5 * time.Second

// Propose commits one command through Raft and returns its result. A
// domain error is in Result.Err; err is set only when the command's outcome
// is unknown or it could not be submitted (Unavailable). While there is no
// leader, it waits (up to electionWait) for one: the command provably was
// not submitted, so trying again is safe.
func (n *Node) Propose(ctx context.Context, env fsm.Envelope) (fsm.Result, error) {
	cmd, err := fsm.EncodeEnvelope(&env)
	if err != nil {
		return fsm.Result{}, err
	}
	return n.proposeRaw(ctx, cmd)
}

// proposeRaw is Propose for an encoded command (forwarded ones arrive so).
func (n *Node) proposeRaw(ctx context.Context, cmd []byte) (fsm.Result, error) {
	deadline := time.Now().Add(electionWait)
	backoff := 20 * time.Millisecond
	for {
		res, err := n.proposeOnce(ctx, cmd)
		if err == nil || !notSubmitted(errs.As(err)) || time.Now().Add(backoff).After(deadline) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-n.shutdownCh:
			return res, err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

func (n *Node) proposeOnce(ctx context.Context, cmd []byte) (fsm.Result, error) {
	pr := newProposal(cmd)
	if err := n.enqueue(ctx, pr); err != nil {
		return fsm.Result{}, err
	}
	return n.await(ctx, pr)
}

func newProposal(cmd []byte) *proposal {
	return &proposal{cmd: cmd, size: len(cmd), done: make(chan fsm.Result, 1)}
}

// enqueue hands pr to the proposer; an error means it was not submitted.
func (n *Node) enqueue(ctx context.Context, pr *proposal) error {
	select {
	case n.prop.queue <- pr:
		return nil
	case <-ctx.Done():
		return errs.New(errs.Unavailable, "request timed out before it was submitted")
	case <-n.shutdownCh:
		return errs.New(errs.Unavailable, "node is shutting down")
	}
}

// await waits for an enqueued proposal's result. err is set when the
// command's outcome is unknown or it was not submitted (Unavailable).
func (n *Node) await(ctx context.Context, pr *proposal) (fsm.Result, error) {
	select {
	case res := <-pr.done:
		if res.Err != nil && res.Err.Code == errs.Unavailable && res.Index == 0 {
			return res, res.Err
		}
		return res, nil
	case <-ctx.Done():
		return fsm.Result{}, errs.New(errs.Unavailable, "timed out waiting for the write to commit; its outcome is unknown")
	}
}

func (p *proposer) loop() {
	busy := false // the last batch was large: more commands are on their way
	inFlight := 0 // batches submitted and not yet answered
	for {
		var first *proposal
		select {
		case first = <-p.queue:
		default:
			waitStart := time.Now()
			select {
			case first = <-p.queue:
			case <-p.stop:
				p.failQueued()
				return
			}
			if time.Since(waitStart) > idleReset {
				busy = false // the burst is over: the next command does not wait for company
			}
		}
		if !p.acquire(&inFlight) {
			first.done <- unavailable("node is shutting down")
			p.failQueued()
			return
		}
		batch := p.fill([]*proposal{first}, first.size, waitForCompany(busy, inFlight))
		busy = len(batch) >= busyBatch
		go func() {
			defer func() { p.freed <- struct{}{} }()
			p.submit(batch)
		}()
	}
}

// waitForCompany reports whether a new batch waits up to commitDelay for
// more commands: after a large batch (the node is under load), or while
// another batch of this node is still in flight, which only happens on a
// follower. Its batches reach a leader that merges everything arriving
// during a Raft round into one entry, so a batch sent now is not committed
// sooner than one sent a little later with more commands, and each forward
// costs an RPC on both sides: at 64 clients, followers forwarded batches of
// ~3 commands, and waiting made them larger and stale reads 11-17 % faster
// (docs/BENCHMARKS.md). A lone client never has company in flight.
func waitForCompany(busy bool, inFlight int) bool { return busy || inFlight > 1 }

// acquire waits until fewer batches than this node's limit are in flight
// and counts one more; false means the node is shutting down.
func (p *proposer) acquire(inFlight *int) bool {
	for {
		select {
		case <-p.stop:
			return false
		default:
		}
		for drained := false; !drained; { // batches answered meanwhile
			select {
			case <-p.freed:
				*inFlight--
			default:
				drained = true
			}
		}
		limit := forwardInFlight
		if p.n.raft.State() == raft.Leader {
			limit = leaderInFlight
		}
		if *inFlight < limit {
			*inFlight++
			return true
		}
		select {
		case <-p.freed:
			*inFlight--
		case <-p.stop:
			return false
		}
	}
}

// fill adds queued commands to batch until the queue is empty or the batch
// full. When busy, it then waits up to commitDelay for more: under load the
// callers of the batch that just committed come back within a fraction of a
// millisecond, and a few more commands per Raft entry are worth far more
// than the wait (each entry costs three fsyncs, an AppendEntries per
// follower, an apply and an audit-store write per node). It is PostgreSQL's
// commit_delay with commit_siblings: an idle or lightly used node never
// waits (a batch of fewer than busyBatch commands does not make the next
// one wait).
func (p *proposer) fill(batch []*proposal, size int, busy bool) []*proposal {
	full := func() bool { return len(batch) >= maxBatchCmds || size >= maxBatchBytes }
	for !full() {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
			size += pr.size
			continue
		default:
		}
		break
	}
	if !busy || full() {
		return batch
	}
	t := time.NewTimer(p.delay)
	defer t.Stop()
	for !full() {
		select {
		case pr := <-p.queue:
			batch = append(batch, pr)
			size += pr.size
		case <-t.C:
			return batch
		case <-p.stop:
			return batch // loop sees stop next and fails what is queued
		}
	}
	return batch
}

func (p *proposer) failQueued() {
	for {
		select {
		case pr := <-p.queue:
			pr.done <- unavailable("node is shutting down")
		default:
			return
		}
	}
}

func unavailable(msg string) fsm.Result {
	return fsm.Result{Err: errs.New(errs.Unavailable, "%s", msg)}
}

func (p *proposer) submit(batch []*proposal) {
	cmds := make([][]byte, len(batch))
	for i, pr := range batch {
		cmds[i] = pr.cmd
	}
	results, err := p.n.commit(cmds)
	for i, pr := range batch {
		if err != nil {
			pr.done <- fsm.Result{Err: errs.As(err)}
			continue
		}
		pr.done <- results[i]
	}
}

// commit applies encoded commands as one Raft entry if this node leads, else forwards
// them to the leader.
func (n *Node) commit(cmds [][]byte) ([]fsm.Result, error) {
	if n.raft.State() == raft.Leader {
		return n.applyBatch(cmds)
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return nil, errs.New(errs.Unavailable, msgNoLeader)
	}
	if n.rpc == nil {
		return nil, errs.New(errs.Unavailable, msgNotLeader)
	}
	body, err := msgpack.Marshal(cmds)
	if err != nil {
		return nil, fmt.Errorf("encode forwarded commands: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), applyTimeout)
	defer cancel()
	// If the leader changes meanwhile (it died), stop waiting for it.
	ctx, stopWatch := n.untilLeaderChange(ctx)
	defer stopWatch()
	if cur, _ := n.raft.LeaderWithID(); cur != addr {
		return nil, errs.New(errs.Unavailable, msgNotLeader)
	}
	ForwardCommands.Observe(float64(len(cmds)))
	start := time.Now()
	out, err := n.rpc.Call(ctx, string(addr), rpcForward, body)
	ForwardSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, errs.New(errs.Unavailable, "the leader changed while the write was forwarded; its outcome is unknown")
		}
		return nil, err
	}
	var results []fsm.Result
	if err := msgpack.Unmarshal(out, &results); err != nil || len(results) != len(cmds) {
		return nil, errs.New(errs.Internal, "bad answer from the leader to forwarded commands")
	}
	return results, nil
}

func (n *Node) applyBatch(cmds [][]byte) ([]fsm.Result, error) {
	data, err := fsm.EncodeRawBatch(n.cfg.Now().UnixNano(), cmds)
	if err != nil {
		return nil, err
	}
	BatchCommands.Observe(float64(len(cmds)))
	start := time.Now()
	f := n.raft.Apply(data, applyTimeout)
	err = f.Error()
	CommitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, errs.New(errs.Unavailable, msgNotSubmitted)
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, errs.New(errs.Unavailable, "leadership lost while committing; the write's outcome is unknown")
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, errs.New(errs.Unavailable, "node is shutting down")
		}
		return nil, errs.New(errs.Unavailable, "commit failed: %v", err)
	}
	results, ok := f.Response().([]fsm.Result)
	if !ok || len(results) != len(cmds) {
		return nil, errs.New(errs.Internal, "unexpected apply response")
	}
	return results, nil
}
