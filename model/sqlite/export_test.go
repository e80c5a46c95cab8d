package sqlite

import (
	"context"
	"database/sql"
)

// OpenInsertRows is Open with the dialect's MaxInsertRows set to rows.
func OpenInsertRows(ctx context.Context, path string, opts Options, rows int) (*Store, error) {
	drv := newDriver()
	drv.insertRows = rows
	return open(ctx, path, opts, drv)
}

// DriverName names the build's driver.
func DriverName() string { return newDriver().name }

// OpenDB opens the file at path with the build's driver, without the
// store.
func OpenDB(path string) *sql.DB { return newDriver().open(path) }

// WALCounters returns the walbuf shim's counters (zeros without cgo).
func WALCounters() (writes, flushes int64) { return walCounters() }

// OpenWALBufDB opens the file at path through the walbuf shim (cgo builds)
// with the given DSN parameters, without the store.
func OpenWALBufDB(path, params string) (*sql.DB, error) {
	drv := newDriver()
	if drv.writerVFS == nil {
		return nil, nil
	}
	vfs, err := drv.writerVFS()
	if err != nil {
		return nil, err
	}
	return drv.open(path + "?vfs=" + vfs + "&" + params), nil
}
