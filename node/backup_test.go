package node

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cofferhq/coffer/kms"
)

func startDevNode(t *testing.T) *Node {
	t.Helper()
	line, err := kms.GenerateRootKey()
	if err != nil {
		t.Fatal(err)
	}
	root, err := kms.ParseRootKeys([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Config{NodeID: "dev", Dev: true, RootKeys: root, SnapshotDir: t.TempDir(), ReconcileInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for n.State().ClusterID == "" {
		if time.Now().After(deadline) {
			t.Fatal("dev node never initialized its cluster")
		}
		time.Sleep(10 * time.Millisecond) // polling the node's own init
	}
	return n
}

func TestBackupFilesAreCheckedAndPruned(t *testing.T) {
	n := startDevNode(t)
	var paths []string
	for i := 0; i < 3; i++ {
		p, err := n.WriteBackup()
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		// File names carry the time to the millisecond: start the next
		// one in a later millisecond.
		for stamp := time.Now().Truncate(time.Millisecond); !time.Now().Truncate(time.Millisecond).After(stamp); {
			runtime.Gosched()
		}
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		info, _, err := ParseSnapshot(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if info.ClusterID != n.State().ClusterID || info.Keys != 1 {
			t.Fatalf("header %+v", info)
		}
		data[len(data)/2] ^= 1
		if _, _, err := ParseSnapshot(data); err == nil {
			t.Fatal("a flipped byte went unnoticed")
		}
	}
	if err := pruneBackups(n.cfg.SnapshotDir, 2); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(n.cfg.SnapshotDir, "*"))
	if len(left) != 2 || left[0] != paths[1] || left[1] != paths[2] {
		t.Fatalf("after pruning: %v", left)
	}
}
