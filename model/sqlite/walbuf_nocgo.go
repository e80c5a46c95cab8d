//go:build !cgo

package sqlite

// walCounters: a build without cgo has no walbuf shim.
func walCounters() (writes, flushes int64) { return 0, 0 }
