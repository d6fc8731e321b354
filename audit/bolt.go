package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketEntries = []byte("entries")
	bucketMeta    = []byte("meta")
	keyFormat     = []byte("format")
)

// boltFormat is the on-disk format: keys are 8-byte big-endian seqs (so the
// B+tree order is seq order), values the msgpack of Entry.
const boltFormat = 1

// scanChunk bounds how many entries one read transaction walks. A long-lived
// bbolt read transaction blocks a writer that needs to grow the mmap, and the
// writer here is fsm.Apply, so Query and Verify release and reopen their
// transaction every chunk instead of holding one over the whole trail.
const scanChunk = 1024

type boltStore struct {
	db *bolt.DB

	trimMu   sync.Mutex
	lastTrim time.Time
}

// trimEvery is how often the store's file mapping is trimmed (trimMapping).
const trimEvery = 10 * time.Second

// maybeTrim trims the mapping if trimEvery has passed since the last trim.
func (s *boltStore) maybeTrim() {
	s.trimMu.Lock()
	due := time.Since(s.lastTrim) >= trimEvery
	if due {
		s.lastTrim = time.Now()
	}
	s.trimMu.Unlock()
	if due {
		trimMapping(s.db)
	}
}

// OpenBoltStore opens (creating if needed) the audit store in the bbolt file
// at path.
//
// Appends run with NoSync: they are not fsynced. That is deliberate: each
// entry is already durable in the Raft log, and a node that crashes replays
// the log since its last snapshot, rewriting those entries idempotently by
// seq. What the store must make durable is only what the log will forget, so
// the caller calls Sync when Raft takes a snapshot, before the log is
// compacted past those entries. A process crash loses nothing (the pages are
// in the OS cache); an OS crash or power loss may lose, or in the worst case
// corrupt, pages written since the last Sync, and Verify reports that.
func OpenBoltStore(path string) (Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      5 * time.Second, // another process holding the file must not hang startup
		NoSync:       true,
		FreelistType: bolt.FreelistMapType,
		// For a new file only (an existing one keeps the size it was made
		// with): a batch of a few hundred entries is written as a few 16 KiB
		// pages rather than dozens of 4 KiB ones, one pwrite each; an
		// append of 400 entries took 22 % less time (BenchmarkBoltAppend100
		// shape, 2026-12-01).
		PageSize: boltPageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("open audit store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketEntries); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keyFormat); v != nil {
			if len(v) != 8 || binary.BigEndian.Uint64(v) != boltFormat {
				return fmt.Errorf("unsupported audit store format %x", v)
			}
			return nil
		}
		return meta.Put(keyFormat, binary.BigEndian.AppendUint64(nil, boltFormat))
	})
	if err == nil {
		err = db.Sync() // the bucket layout itself is worth one fsync
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open audit store %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

// entrySizeHint is about the encoded size of one entry, to size buffers;
// boltPageSize is the page size of new store files.
const (
	entrySizeHint = 320
	boltPageSize  = 16 << 10
)

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

func decodeEntry(v []byte) (Entry, error) {
	var e Entry
	if err := msgpack.Unmarshal(v, &e); err != nil {
		return Entry{}, err
	}
	// msgpack restores times in the local zone; keep what the API returns
	// independent of the node's TZ.
	e.Time = e.Time.UTC()
	return e, nil
}

func (s *boltStore) Append(entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	if err := checkOrder(entries); err != nil {
		return err
	}
	entries = s.skipHeld(entries)
	if len(entries) == 0 {
		return nil
	}
	// Encode outside the write transaction (bbolt has one writer at a time),
	// every entry into one buffer: bbolt keeps the slices until the commit.
	var buf bytes.Buffer
	buf.Grow(entrySizeHint * len(entries))
	enc := msgpack.GetEncoder()
	enc.Reset(&buf)
	ends := make([]int, len(entries))
	for i := range entries {
		if err := enc.Encode(&entries[i]); err != nil {
			msgpack.PutEncoder(enc)
			return fmt.Errorf("audit append: encode entry %d: %w", entries[i].Seq, err)
		}
		ends[i] = buf.Len()
	}
	msgpack.PutEncoder(enc)
	vals := buf.Bytes() // not before the end: the buffer may have moved while growing
	keys := make([]byte, 8*len(entries))
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		b.FillPercent = 1.0 // keys arrive in order: pack pages full
		start := 0
		for i := range entries {
			k := keys[8*i : 8*i+8 : 8*i+8]
			binary.BigEndian.PutUint64(k, entries[i].Seq)
			if err := b.Put(k, vals[start:ends[i]:ends[i]]); err != nil {
				return err
			}
			start = ends[i]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit append %d..%d: %w", entries[0].Seq, entries[len(entries)-1].Seq, err)
	}
	s.maybeTrim()
	return nil
}

// skipHeld drops the leading entries the store already holds, as a replay
// of the Raft log after a restart brings them again (re-encoding and
// rewriting them was a third of a replay's cost). The hash chain makes the
// check cheap: if the store holds every seq of the range and its entry at
// the top of the range has the same hash, every entry of the range is the
// same. Anything else (a gap, another hash) is written, as Append promises.
func (s *boltStore) skipHeld(entries []Entry) []Entry {
	held := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		n := 0
		var topVal []byte // valid only inside this transaction
		for k, v := c.Seek(seqKey(entries[0].Seq)); k != nil && n < len(entries) && binary.BigEndian.Uint64(k) == entries[n].Seq; k, v = c.Next() {
			topVal = v
			n++
		}
		if n == 0 {
			return nil
		}
		if top, err := decodeEntry(topVal); err == nil && top.Hash != "" && top.Hash == entries[n-1].Hash {
			held = n
		}
		return nil
	})
	return entries[held:]
}

func (s *boltStore) TruncateAfter(seq uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		for k, _ := c.Last(); k != nil && binary.BigEndian.Uint64(k) > seq; k, _ = c.Last() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		// Truncation happens on restore and is rare; make it stick, so a
		// crash can't resurrect entries of a history the cluster left.
		err = s.db.Sync()
	}
	if err != nil {
		return fmt.Errorf("audit truncate after %d: %w", seq, err)
	}
	return nil
}

func (s *boltStore) Sync() error {
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("audit sync: %w", err)
	}
	return nil
}

func (s *boltStore) First() (uint64, bool) {
	seq, ok, _ := s.firstSeq()
	return seq, ok
}

func (s *boltStore) firstSeq() (uint64, bool, error) { return s.edgeSeq(false) }
func (s *boltStore) lastSeq() (uint64, bool, error)  { return s.edgeSeq(true) }

// edgeSeq returns the lowest or highest key without decoding its value.
func (s *boltStore) edgeSeq(last bool) (seq uint64, ok bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		k, _ := c.First()
		if last {
			k, _ = c.Last()
		}
		if k != nil {
			seq, ok = binary.BigEndian.Uint64(k), true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("audit store: %w", err)
	}
	return seq, ok, nil
}

func (s *boltStore) Last() (e Entry, ok bool) {
	_ = s.db.View(func(tx *bolt.Tx) error {
		if k, v := tx.Bucket(bucketEntries).Cursor().Last(); k != nil {
			var err error
			e, err = decodeEntry(v)
			ok = err == nil
		}
		return nil
	})
	return e, ok
}

func (s *boltStore) Get(seq uint64) (e Entry, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(seqKey(seq))
		if v == nil {
			return nil
		}
		found = true
		e, err = decodeEntry(v)
		return err
	})
	if err != nil {
		return Entry{}, false, fmt.Errorf("audit get %d: %w", seq, err)
	}
	return e, found, nil
}

// errStopScan ends a scan early from inside a transaction.
var errStopScan = errors.New("stop scan")

func (s *boltStore) scan(from uint64, fn func(uint64, *Entry, error) bool) error {
	for {
		var next uint64
		more := false
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEntries).Cursor()
			n := 0
			for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
				if n == scanChunk {
					next, more = binary.BigEndian.Uint64(k), true
					return nil
				}
				n++
				seq := binary.BigEndian.Uint64(k)
				e, err := decodeEntry(v) // bbolt values die with the transaction; decode inside it
				if !fn(seq, &e, err) {
					return errStopScan
				}
			}
			return nil
		})
		if errors.Is(err, errStopScan) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit scan: %w", err)
		}
		if !more {
			return nil
		}
		from = next
	}
}

func (s *boltStore) Query(q Query) ([]Entry, string, error) {
	defer s.maybeTrim()
	return runQuery(s, q)
}

func (s *boltStore) Verify() (ok bool, checked uint64, first, last, firstBroken uint64, err error) {
	defer s.maybeTrim() // a verify reads the whole file
	return runVerify(s)
}

func (s *boltStore) Close() error { return s.db.Close() }

// Range implements Store.
func (s *boltStore) Range(from, to uint64, max int) ([]Entry, error) {
	defer s.maybeTrim()
	return rangeEntries(s, from, to, max)
}
