//go:build cgo

package sqlite

import "database/sql"

// WALCounters returns the walbuf shim's counters.
func WALCounters() (writes, flushes int64) { return walCounters() }

// OpenWALBufDB opens the file at path through the walbuf shim with the
// given DSN parameters, without the store.
func OpenWALBufDB(path, params string) (*sql.DB, error) {
	vfs, err := walbufVFS()
	if err != nil {
		return nil, err
	}
	return newDriver().open(path + "?vfs=" + vfs + "&" + params), nil
}
