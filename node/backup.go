package node

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// writeAutomatedBackup, run every SnapshotInterval, writes a snapshot file
// into SnapshotDir and keeps the newest SnapshotRetain files. Each file is
// written to a temporary name, synced and renamed, so a crash never leaves a
// partial file under a snapshot's name. It is written by WriteSnapshot, so
// it carries the MAC a restore checks.
func (n *Node) writeAutomatedBackup() {
	if n.fsm.State().ClusterID == "" {
		return
	}
	path, err := n.WriteBackup()
	if err != nil {
		n.logger.Error("automated snapshot failed", "error", err)
		return
	}
	n.logger.Info("automated snapshot written", "file", path)
	if err := pruneBackups(n.cfg.SnapshotDir, n.cfg.SnapshotRetain); err != nil {
		n.logger.Warn("pruning old snapshots failed", "error", err)
	}
}

// WriteBackup writes one snapshot file into SnapshotDir and returns its path.
func (n *Node) WriteBackup() (string, error) {
	dir := n.cfg.SnapshotDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create snapshot dir: %w", err)
	}
	st := n.fsm.State()
	name := fmt.Sprintf("coffer-%s-%d.snap", time.Now().UTC().Format("20060102T150405.000Z"), st.Index)
	final := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".tmp-*.snap")
	if err != nil {
		return "", fmt.Errorf("create snapshot file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if _, err := n.WriteSnapshot(bw); err != nil {
		tmp.Close()
		return "", err
	}
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write snapshot file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("sync snapshot file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("close snapshot file: %w", err)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("rename snapshot file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable
		d.Close()
	}
	return final, nil
}

// pruneBackups keeps the newest retain snapshot files (names sort by time).
func pruneBackups(dir string, retain int) error {
	if retain <= 0 {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var snaps []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "coffer-") && strings.HasSuffix(e.Name(), ".snap") {
			snaps = append(snaps, e.Name())
		}
	}
	sort.Strings(snaps)
	for len(snaps) > retain {
		if err := os.Remove(filepath.Join(dir, snaps[0])); err != nil {
			return err
		}
		snaps = snaps[1:]
	}
	return nil
}
