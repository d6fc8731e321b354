//go:build !unix

package api

func openFileLimit() (uint64, bool) { return 0, false }
