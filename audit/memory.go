package audit

import (
	"errors"
	"sort"
	"sync"
)

var errClosed = errors.New("audit store closed")

// memoryStore keeps entries in a slice sorted by seq: appends at the tail are
// O(1) amortised and lookups binary-search.
type memoryStore struct {
	mu      sync.RWMutex
	entries []Entry
	closed  bool
}

// NewMemoryStore returns an in-memory Store with the same semantics as the
// bbolt one, for dev mode and tests. Nothing survives Close.
func NewMemoryStore() Store { return &memoryStore{} }

// find returns the index of seq, or where it would be inserted.
func (m *memoryStore) find(seq uint64) (int, bool) {
	i := sort.Search(len(m.entries), func(i int) bool { return m.entries[i].Seq >= seq })
	return i, i < len(m.entries) && m.entries[i].Seq == seq
}

func (m *memoryStore) Append(entries []Entry) error {
	if err := checkOrder(entries); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	for _, e := range entries {
		if n := len(m.entries); n == 0 || m.entries[n-1].Seq < e.Seq {
			m.entries = append(m.entries, e)
			continue
		}
		i, found := m.find(e.Seq)
		if found {
			m.entries[i] = e
			continue
		}
		m.entries = append(m.entries, Entry{})
		copy(m.entries[i+1:], m.entries[i:])
		m.entries[i] = e
	}
	return nil
}

func (m *memoryStore) TruncateAfter(seq uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	i, _ := m.find(seq + 1)
	if seq == ^uint64(0) {
		i = len(m.entries)
	}
	clear(m.entries[i:]) // let the dropped strings be collected
	m.entries = m.entries[:i]
	return nil
}

func (m *memoryStore) Sync() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return errClosed
	}
	return nil
}

func (m *memoryStore) First() (uint64, bool) {
	seq, ok, _ := m.firstSeq()
	return seq, ok
}

func (m *memoryStore) firstSeq() (uint64, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, false, errClosed
	}
	if len(m.entries) == 0 {
		return 0, false, nil
	}
	return m.entries[0].Seq, true, nil
}

func (m *memoryStore) lastSeq() (uint64, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return 0, false, errClosed
	}
	if len(m.entries) == 0 {
		return 0, false, nil
	}
	return m.entries[len(m.entries)-1].Seq, true, nil
}

func (m *memoryStore) Last() (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.entries) == 0 {
		return Entry{}, false
	}
	return m.entries[len(m.entries)-1], true
}

func (m *memoryStore) Get(seq uint64) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return Entry{}, false, errClosed
	}
	if i, ok := m.find(seq); ok {
		return m.entries[i], true, nil
	}
	return Entry{}, false, nil
}

// scan copies up to scanChunk entries at a time under the read lock and
// calls fn outside it, so a long Verify or Query does not hold Append (the
// FSM's Apply) for the whole walk. Chunks start small and grow, so a query
// for a page of a few entries copies only a few.
func (m *memoryStore) scan(from uint64, fn func(uint64, *Entry, error) bool) error {
	var buf []Entry
	chunk := 16
	for {
		m.mu.RLock()
		if m.closed {
			m.mu.RUnlock()
			return errClosed
		}
		i, _ := m.find(from)
		j := min(i+chunk, len(m.entries))
		buf = append(buf[:0], m.entries[i:j]...) // copies: fn must not reach into the store
		more := j < len(m.entries)
		m.mu.RUnlock()
		for k := range buf {
			if !fn(buf[k].Seq, &buf[k], nil) {
				return nil
			}
		}
		if !more || len(buf) == 0 || buf[len(buf)-1].Seq == ^uint64(0) {
			return nil
		}
		from = buf[len(buf)-1].Seq + 1
		chunk = min(2*chunk, scanChunk)
	}
}

func (m *memoryStore) Query(q Query) ([]Entry, string, error) { return runQuery(m, q) }

func (m *memoryStore) Verify() (ok bool, checked uint64, first, last, firstBroken uint64, err error) {
	return runVerify(m)
}

func (m *memoryStore) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.entries = nil
	return nil
}

// Range implements Store.
func (m *memoryStore) Range(from, to uint64, max int) ([]Entry, error) {
	return rangeEntries(m, from, to, max)
}
