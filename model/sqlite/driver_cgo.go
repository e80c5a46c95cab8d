//go:build cgo

package sqlite

import (
	"errors"

	mattn "github.com/mattn/go-sqlite3"
)

// newDriver returns github.com/mattn/go-sqlite3, which calls SQLite's C
// code: per message about 17% less CPU than modernc.org/sqlite in
// BenchmarkStoreMessage (256 senders), and a single-row INSERT costs it
// less than the statement journal of a multi-row one (MaxInsertRows 1).
func newDriver() sqlDriver {
	return sqlDriver{name: "mattn", drv: &mattn.SQLiteDriver{},
		// database/sql never uses a connection from two goroutines at
		// once: SQLite's own mutex per connection is not needed.
		params:     map[string]string{"_mutex": "no"},
		insertRows: 1,
		code: func(err error) (int, bool) {
			var e mattn.Error
			if errors.As(err, &e) {
				return int(e.ExtendedCode), true
			}
			return 0, false
		}}
}
