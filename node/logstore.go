package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
)

// Raft log stores. The WAL (hashicorp/raft-wal, Consul's log store) appends
// each batch of entries to a preallocated segment file with one fsync; the
// bbolt store (raft-boltdb/v2) rewrites B-tree pages and fsyncs twice per
// batch. Measured here the WAL appends twice as fast with less than half the
// CPU (docs/BENCHMARKS.md), so new data dirs use it; data dirs created by
// earlier versions keep their bbolt log.
const (
	LogStoreAuto = ""     // WAL for a new data dir, whatever the data dir holds otherwise
	LogStoreWAL  = "wal"  // DATA_DIR/wal/
	LogStoreBolt = "bolt" // DATA_DIR/raft.db
)

const (
	walDirName  = "wal"
	boltLogName = "raft.db"
)

// logStore is the Raft log and stable store of one data dir.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// openLogStore opens the data dir's Raft log of the given kind. The kind must
// match what the data dir already holds: opening the other one would start an
// empty log next to the real one.
// segmentSize 0 takes the WAL's default.
func openLogStore(dataDir, kind string, segmentSize int, logger hclog.Logger) (logStore, string, error) {
	walDir := filepath.Join(dataDir, walDirName)
	boltPath := filepath.Join(dataDir, boltLogName)
	hasWAL, err := exists(walDir)
	if err != nil {
		return nil, "", err
	}
	hasBolt, err := exists(boltPath)
	if err != nil {
		return nil, "", err
	}
	if hasWAL && hasBolt {
		return nil, "", fmt.Errorf("data dir %s holds both a WAL (%s) and a bbolt Raft log (%s); keep one", dataDir, walDir, boltPath)
	}
	switch kind {
	case LogStoreAuto:
		kind = LogStoreWAL
		if hasBolt {
			kind = LogStoreBolt
		}
	case LogStoreWAL:
		if hasBolt {
			return nil, "", fmt.Errorf("data dir %s holds a bbolt Raft log (%s), not a WAL: use --raft-log-store bolt", dataDir, boltPath)
		}
	case LogStoreBolt:
		if hasWAL {
			return nil, "", fmt.Errorf("data dir %s holds a WAL Raft log (%s), not bbolt: use --raft-log-store wal", dataDir, walDir)
		}
	default:
		return nil, "", fmt.Errorf("unknown Raft log store %q (want wal or bolt)", kind)
	}
	if kind == LogStoreBolt {
		s, err := raftboltdb.NewBoltStore(boltPath)
		if err != nil {
			return nil, "", fmt.Errorf("open raft log %s: %w", boltPath, err)
		}
		return s, kind, nil
	}
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create raft log dir: %w", err)
	}
	s, err := wal.Open(walDir, wal.WithLogger(logger), wal.WithSegmentSize(segmentSize)) // 0: default
	if err != nil {
		return nil, "", fmt.Errorf("open raft log %s: %w", walDir, err)
	}
	return s, kind, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("inspect data dir: %w", err)
}
