package audit

import (
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// trimMapping drops this process's mappings of the store's file pages
// (madvise MADV_DONTNEED). bbolt reads through a shared read-only mmap, and
// the trail is appended in seq order: every leaf page is the rightmost one
// for a while and gets read, so the whole file ends up mapped and counted in
// the node's RSS (hundreds of MB at a million secrets) although nothing
// reads it again. The pages stay in the OS page cache; a later read faults
// them back in. Done inside a read transaction, so bbolt can't remap meanwhile.
func trimMapping(db *bolt.DB) {
	_ = db.View(func(tx *bolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		// The raw syscall takes the mapping's address as bbolt gives it.
		_, _, _ = unix.Syscall(unix.SYS_MADVISE, db.Info().Data, uintptr(size), unix.MADV_DONTNEED)
		return nil
	})
}
