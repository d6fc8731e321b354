//go:build !linux

package audit

import bolt "go.etcd.io/bbolt"

// trimMapping is a no-op where madvise is not available.
func trimMapping(*bolt.DB) {}
