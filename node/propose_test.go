package node

import (
	"testing"
	"time"
)

func testProposer() *proposer {
	return &proposer{queue: make(chan *proposal, 4096), stop: make(chan struct{}), delay: commitDelay}
}

func queueN(p *proposer, n, size int) {
	for range n {
		p.queue <- &proposal{cmd: make([]byte, size), size: size}
	}
}

// TestFillNotBusy: after a small batch, fill takes what is queued and
// returns without waiting (a lone client never waits for company).
func TestFillNotBusy(t *testing.T) {
	p := testProposer()
	p.delay = time.Hour
	queueN(p, 3, 10)
	done := make(chan []*proposal)
	go func() { done <- p.fill([]*proposal{{size: 10}}, 10, false) }()
	select {
	case b := <-done:
		if len(b) != 4 {
			t.Fatalf("batch of %d, want the first and the 3 queued", len(b))
		}
	case <-time.After(time.Minute):
		t.Fatal("fill waited after a small batch")
	}
}

// TestFillBusyWaits: after a large batch, fill waits commitDelay for more.
func TestFillBusyWaits(t *testing.T) {
	p := testProposer()
	queueN(p, 3, 10)
	start := time.Now()
	batch := p.fill([]*proposal{{size: 10}}, 10, true)
	if len(batch) != 4 {
		t.Fatalf("batch of %d, want 4", len(batch))
	}
	if waited := time.Since(start); waited < commitDelay {
		t.Fatalf("a busy fill returned after %v, before commitDelay (%v)", waited, commitDelay)
	}
}

// TestFillBusyJoins: commands arriving while fill waits join the batch
// (with a delay long enough that only a full batch ends the wait).
func TestFillBusyJoins(t *testing.T) {
	p := testProposer()
	p.delay = time.Hour
	done := make(chan []*proposal)
	go func() { done <- p.fill([]*proposal{{size: 10}}, 10, true) }()
	queueN(p, maxBatchCmds-1, 10)
	select {
	case b := <-done:
		if len(b) != maxBatchCmds {
			t.Fatalf("batch of %d, want %d", len(b), maxBatchCmds)
		}
	case <-time.After(time.Minute):
		t.Fatal("fill did not return when its batch was full")
	}
}

// TestFillBusyFull: a busy fill that fills its batch does not wait.
func TestFillBusyFull(t *testing.T) {
	p := testProposer()
	queueN(p, maxBatchCmds+10, 1)
	batch := p.fill([]*proposal{{size: 1}}, 1, true)
	if len(batch) != maxBatchCmds {
		t.Fatalf("batch of %d, want %d", len(batch), maxBatchCmds)
	}
	if len(p.queue) != 11 {
		t.Fatalf("%d left queued, want 11", len(p.queue))
	}
	// By bytes too.
	p = testProposer()
	queueN(p, 3, maxBatchBytes/2)
	if b := p.fill([]*proposal{{size: 1}}, 1, true); len(b) != 3 {
		t.Fatalf("batch of %d, want 3 (the byte limit reached)", len(b))
	}
}

// TestFillBusyStops: shutdown ends the wait.
func TestFillBusyStops(t *testing.T) {
	p := testProposer()
	close(p.stop)
	if b := p.fill([]*proposal{{size: 1}}, 1, true); len(b) != 1 {
		t.Fatalf("batch of %d, want 1", len(b))
	}
}

// TestWaitForCompany: a batch waits for more commands after a large one, or
// while another of this node's batches is in flight (a follower's forwards);
// a lone command with nothing in flight never waits.
func TestWaitForCompany(t *testing.T) {
	for _, c := range []struct {
		busy     bool
		inFlight int // counting the batch being formed
		want     bool
	}{
		{false, 1, false},
		{true, 1, true},
		{false, 2, true},
		{true, forwardInFlight, true},
	} {
		if got := waitForCompany(c.busy, c.inFlight); got != c.want {
			t.Errorf("waitForCompany(%v, %d) = %v, want %v", c.busy, c.inFlight, got, c.want)
		}
	}
}
