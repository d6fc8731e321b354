package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/errs"
)

var snapshotCommands = []command{
	{"save", "Save a snapshot of the cluster state to FILE", snapshotSave},
	{"restore", "Replace the cluster state with the snapshot in FILE", snapshotRestore},
	{"inspect", "Check a snapshot file and print its header (no node needed)", snapshotInspect},
}

func runSnapshotGroup(a *app, args []string) int {
	return a.dispatch("snapshot", snapshotCommands, args)
}

func snapshotSave(a *app, args []string) int {
	c := a.newCmd("snapshot save", "FILE [flags]",
		"Saves a snapshot (the replicated state, encrypted as stored) to FILE, mode 0600.\nFILE appears only once the snapshot is complete. FILE - writes the snapshot to stdout.").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	file := pos[0]
	if file == "-" {
		if err := cl.Snapshot(a.ctx, a.stdout); err != nil {
			return c.fail(err)
		}
		return 0
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
	if err != nil {
		return c.fail(errs.New(errs.InvalidArgument, "%v", err))
	}
	n, err := saveTo(tmp, file, func(f *os.File) error { return cl.Snapshot(a.ctx, f) })
	if err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		c.printValue(map[string]any{"file": file, "bytes": n})
	} else {
		fmt.Fprintf(a.stdout, "Saved snapshot to %s (%d bytes)\n", file, n)
	}
	return 0
}

// saveTo fills tmp with fill, then syncs it and renames it to file; on any
// failure tmp is removed and file is left untouched.
func saveTo(tmp *os.File, file string, fill func(*os.File) error) (int64, error) {
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return 0, errs.New(errs.Internal, "%v", err)
	}
	if err := fill(tmp); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, errs.New(errs.Internal, "writing %s: %v", tmp.Name(), err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return 0, errs.New(errs.Internal, "%v", err)
	}
	if err := tmp.Close(); err != nil {
		return 0, errs.New(errs.Internal, "writing %s: %v", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return 0, errs.New(errs.Internal, "%v", err)
	}
	ok = true
	if d, err := os.Open(filepath.Dir(file)); err == nil { // persist the rename
		_ = d.Sync()
		_ = d.Close()
	}
	return fi.Size(), nil
}

func snapshotRestore(a *app, args []string) int {
	c := a.newCmd("snapshot restore", "FILE [flags]",
		"Replaces the cluster's data with the snapshot in FILE. The cluster refuses (InvalidArgument) a file whose MAC\n"+
			"does not verify under its root keys (a changed file, a format-1 file, or one written under another root key)\n"+
			"and one whose state fails validation; it refuses one from another cluster unless it is a fresh cluster under\n"+
			"the same root key (disaster recovery). A refused restore changes nothing.").withConn()
	pos, rc := c.parse(args, 1, 1)
	if rc >= 0 {
		return rc
	}
	cl, err := c.client()
	if err != nil {
		return c.fail(err)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return c.fail(errs.New(errs.InvalidArgument, "%v", err))
	}
	defer f.Close()
	if err := cl.Restore(a.ctx, f); err != nil {
		return c.fail(err)
	}
	if c.jsonOut() {
		c.printValue(map[string]any{"index": cl.LastIndex()})
	} else {
		fmt.Fprintf(a.stdout, "Restored snapshot from %s\n", pos[0])
	}
	return 0
}
