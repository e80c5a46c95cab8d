package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
)

// sqlDriver is an SQLite driver for database/sql: how to open a connection
// and how to read the extended result code of its errors. newDriver
// returns the build's: github.com/mattn/go-sqlite3 (cgo, SQLite's own C)
// when cgo is on, as it is by default where a C compiler is installed
// (scripts/deps.sh installs gcc and libc6-dev); modernc.org/sqlite (the same
// C transpiled to Go) in a CGO_ENABLED=0 build.
type sqlDriver struct {
	name string
	drv  driver.Driver
	// extra DSN parameters of the driver's own (beside the common ones)
	params map[string]string
	code   func(error) (int, bool)
	// insertRows is the dialect's MaxInsertRows.
	insertRows int
	// writerVFS, when set, returns the VFS for the writer's connection
	// (walbuf_cgo.go).
	writerVFS func() (string, error)
}

// The SQLite result codes the store tells apart, from sqlite3.h (fixed by
// SQLite's file format and API, the same in every build).
const (
	codeBusy        = 5                     // SQLITE_BUSY
	codeLocked      = 6                     // SQLITE_LOCKED
	codeConstraint  = 19                    // SQLITE_CONSTRAINT
	codeUnique      = codeConstraint | 8<<8 // SQLITE_CONSTRAINT_UNIQUE
	codePrimaryKey  = codeConstraint | 6<<8 // SQLITE_CONSTRAINT_PRIMARYKEY
	codeForeignKey  = codeConstraint | 3<<8 // SQLITE_CONSTRAINT_FOREIGNKEY
	codePrimaryMask = 0xff                  // an extended code's primary code
)

// connector opens connections of drv to dsn and runs pragmas on each.
type connector struct {
	drv     driver.Driver
	dsn     string
	pragmas []string
}

var _ driver.Connector = (*connector)(nil)

func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	if len(c.pragmas) == 0 {
		return conn, nil
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		_ = conn.Close()
		return nil, fmt.Errorf("driver %T cannot run pragmas", conn)
	}
	for _, p := range c.pragmas {
		if _, err := ex.ExecContext(ctx, p, nil); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return conn, nil
}

func (c *connector) Driver() driver.Driver { return c.drv }

// open returns a pool of drv's connections to dsn, each with pragmas run.
func (d sqlDriver) open(dsn string, pragmas ...string) *sql.DB {
	return sql.OpenDB(&connector{drv: d.drv, dsn: dsn, pragmas: pragmas})
}
