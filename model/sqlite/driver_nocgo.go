//go:build !cgo

package sqlite

import (
	"errors"

	modernc "modernc.org/sqlite"
)

// newDriver returns modernc.org/sqlite, SQLite transpiled to Go, for builds
// without cgo.
func newDriver() sqlDriver {
	return sqlDriver{name: "modernc", drv: &modernc.Driver{}, code: func(err error) (int, bool) {
		var e *modernc.Error
		if errors.As(err, &e) {
			return e.Code(), true
		}
		return 0, false
	}}
}
