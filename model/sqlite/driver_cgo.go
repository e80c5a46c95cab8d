//go:build cgo

package sqlite

import (
	"errors"

	mattn "github.com/mattn/go-sqlite3"
)

// newDriver returns github.com/mattn/go-sqlite3, which calls SQLite's C
// code: per message 20-30% less CPU than modernc.org/sqlite in
// BenchmarkStoreMessage (256 senders), and a single-row INSERT costs it
// less than the statement journal of a multi-row one (MaxInsertRows 1).
//
// go.mod pins v1.14.50 (SQLite 3.53.4). v1.14.53 (SQLite 3.54.1) made the
// store's reads 3-4 times as costly (BenchmarkLoginReads: 0.9 -> 3.5-4.5 s
// of user CPU): its query planner marks bound parameters of our SELECTs as
// worth re-planning for, and binding a new value then re-prepares the
// statement at every execution (sqlite3Reprepare 47% of the profile).
// Run BenchmarkLoginReads before moving to a newer version.
func newDriver() sqlDriver {
	return sqlDriver{name: "mattn", drv: &mattn.SQLiteDriver{},
		// database/sql never uses a connection from two goroutines at
		// once: SQLite's own mutex per connection is not needed.
		params:     map[string]string{"_mutex": "no"},
		insertRows: 1,
		writerVFS:  walbufVFS,
		code: func(err error) (int, bool) {
			var e mattn.Error
			if errors.As(err, &e) {
				return int(e.ExtendedCode), true
			}
			return 0, false
		}}
}
