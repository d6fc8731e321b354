package audit

import (
	"sync"
	"time"
)

// BufferedStore batches appends to an inner Store: the FSM appends every
// log entry's audit entries at once, and under load one bbolt transaction
// per Raft entry costs more than the entries themselves. Appends are queued
// and written in large batches by one goroutine, every FlushInterval or
// FlushEntries entries. Every read (Query, Get, Range, Verify, First, Last)
// and Sync first drain the queue, so readers always see every applied
// entry. Durability is unchanged: the store is rebuilt from the Raft log
// after a crash (appends are idempotent by seq), and Sync, called before a
// Raft snapshot, flushes and syncs.
type BufferedStore struct {
	inner Store

	// writeMu serializes writes to inner and is held while one runs; mu
	// guards the queue only, so the FSM queues entries while a batch is
	// being written (it used to wait, holding up the answers of a leader).
	// Lock order: writeMu, then mu.
	writeMu sync.Mutex
	mu      sync.Mutex
	pending []Entry
	spare   []Entry // the queue's other buffer, swapped in by flush
	err     error   // first write error, reported by the next call
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

const (
	bufferedFlushInterval = 20 * time.Millisecond
	bufferedFlushEntries  = 4096
)

// NewBufferedStore wraps inner; Close closes inner.
func NewBufferedStore(inner Store) *BufferedStore {
	b := &BufferedStore{inner: inner, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

func (b *BufferedStore) loop() {
	defer close(b.done)
	t := time.NewTicker(bufferedFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		case <-b.kick:
		}
		_ = b.flush()
	}
}

// flush writes the queued entries. It returns once everything queued
// before the call is written, so a reader that drains sees its entries.
func (b *BufferedStore) flush() error {
	b.writeMu.Lock()
	defer b.writeMu.Unlock()
	b.mu.Lock()
	batch := b.pending
	if len(batch) == 0 {
		err := b.err
		b.mu.Unlock()
		return err
	}
	// Appends go to the other buffer while this one is written; the two
	// never share an array (spare is nil until this write is done).
	b.pending, b.spare = b.spare[:0], nil
	b.mu.Unlock()
	err := b.inner.Append(batch)
	clear(batch) // drop the strings the entries hold
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spare = batch[:0]
	if err != nil && b.err == nil {
		b.err = err
	}
	return b.err
}

// Append queues entries; they are written within FlushInterval.
func (b *BufferedStore) Append(entries []Entry) error {
	if err := checkOrder(entries); err != nil {
		return err
	}
	b.mu.Lock()
	if n := len(b.pending); n > 0 && len(entries) > 0 && entries[0].Seq <= b.pending[n-1].Seq {
		// Not a continuation (a replay or a backfill): write what is queued
		// first so the inner store sees seqs in the order they came.
		b.mu.Unlock()
		_ = b.flush()
		b.mu.Lock()
	}
	b.pending = append(b.pending, entries...)
	full := len(b.pending) >= bufferedFlushEntries
	err := b.err
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return err
}

// TruncateAfter implements Store.
func (b *BufferedStore) TruncateAfter(seq uint64) error {
	if err := b.flush(); err != nil {
		return err
	}
	return b.inner.TruncateAfter(seq)
}

// Sync implements Store: flush, then make durable.
func (b *BufferedStore) Sync() error {
	if err := b.flush(); err != nil {
		return err
	}
	return b.inner.Sync()
}

// First implements Store.
func (b *BufferedStore) First() (uint64, bool) {
	_ = b.flush()
	return b.inner.First()
}

// Last implements Store.
func (b *BufferedStore) Last() (Entry, bool) {
	_ = b.flush()
	return b.inner.Last()
}

// Get implements Store.
func (b *BufferedStore) Get(seq uint64) (Entry, bool, error) {
	if err := b.flush(); err != nil {
		return Entry{}, false, err
	}
	return b.inner.Get(seq)
}

// Query implements Store.
func (b *BufferedStore) Query(q Query) ([]Entry, string, error) {
	if err := b.flush(); err != nil {
		return nil, "", err
	}
	return b.inner.Query(q)
}

// Verify implements Store.
func (b *BufferedStore) Verify() (ok bool, checked uint64, first, last, firstBroken uint64, err error) {
	if err := b.flush(); err != nil {
		return false, 0, 0, 0, 0, err
	}
	return b.inner.Verify()
}

// Range implements Store.
func (b *BufferedStore) Range(from, to uint64, max int) ([]Entry, error) {
	if err := b.flush(); err != nil {
		return nil, err
	}
	return b.inner.Range(from, to, max)
}

// Close flushes and closes the inner store.
func (b *BufferedStore) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
		<-b.done
	}
	err := b.flush()
	if cerr := b.inner.Close(); err == nil {
		err = cerr
	}
	return err
}
