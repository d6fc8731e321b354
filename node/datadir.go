package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cofferhq/coffer/kms"
)

// dataDirMeta is node.json in the data dir: who wrote it, for which cluster,
// under which root keys (fingerprints only), so a node refuses to start on
// another cluster's data or with the wrong root key.
type dataDirMeta struct {
	mu   sync.Mutex
	path string
	File struct {
		NodeID           string   `json:"node_id"`
		ClusterID        string   `json:"cluster_id,omitempty"`
		RootFingerprints []string `json:"root_key_fingerprints"`
	}
}

func openDataDirMeta(dir, nodeID string, root *kms.RootKeys) (*dataDirMeta, error) {
	m := &dataDirMeta{path: filepath.Join(dir, "node.json")}
	b, err := os.ReadFile(m.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		m.File.NodeID = nodeID
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", m.path, err)
	default:
		if err := json.Unmarshal(b, &m.File); err != nil {
			return nil, fmt.Errorf("data dir %s: node.json is corrupt: %w", dir, err)
		}
		if m.File.NodeID != nodeID {
			return nil, fmt.Errorf("data dir %s belongs to node %q, not %q", dir, m.File.NodeID, nodeID)
		}
		known := false
		for _, fp := range root.Fingerprints() {
			known = known || slices.Contains(m.File.RootFingerprints, fp)
		}
		if len(m.File.RootFingerprints) > 0 && !known {
			return nil, fmt.Errorf("data dir %s was written under a different root key: wrong --root-key-file for this cluster", dir)
		}
	}
	for _, fp := range root.Fingerprints() {
		if !slices.Contains(m.File.RootFingerprints, fp) {
			m.File.RootFingerprints = append(m.File.RootFingerprints, fp)
		}
	}
	return m, m.save()
}

// setClusterID records the cluster id once known; a different one is an
// error (the data dir belongs to another cluster).
func (m *dataDirMeta) setClusterID(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.File.ClusterID == id {
		return nil
	}
	if m.File.ClusterID != "" {
		return fmt.Errorf("data dir belongs to cluster %s, but the state is of cluster %s", m.File.ClusterID, id)
	}
	m.File.ClusterID = id
	return m.saveLocked()
}

func (m *dataDirMeta) clusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.File.ClusterID
}

func (m *dataDirMeta) save() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saveLocked()
}

func (m *dataDirMeta) saveLocked() error {
	b, err := json.MarshalIndent(&m.File, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, m.path); err != nil {
		return fmt.Errorf("write %s: %w", m.path, err)
	}
	return nil
}
