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

// WALBounds is walBounds.
func WALBounds(restart int, limit int64) (int, int64) { return walBounds(restart, limit) }
