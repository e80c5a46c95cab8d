package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrate brings the schema to the newest version: it creates the
// schema_version table, then runs each missing step in its own transaction,
// re-reading the version inside it so that two processes migrating at once
// do not run a step twice. (MySQL commits DDL implicitly, so there the
// dialect's LockMigrations serialises the processes instead.)
func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.w.Conn(ctx)
	if err != nil {
		return s.errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if s.d.LockMigrations != nil {
		unlock, err := s.d.LockMigrations(ctx, conn)
		if err != nil {
			return s.errorf("migrate: lock: %w", err)
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, s.d.VersionTable); err != nil {
		return s.errorf("migrate: create schema_version: %w", err)
	}
	for v := 1; v <= len(s.d.Migrations); v++ {
		if err := s.migrateStep(ctx, conn, v); err != nil {
			return s.errorf("migrate to version %d: %w", v, err)
		}
	}
	return nil
}

func (s *Store) migrateStep(ctx context.Context, conn *sql.Conn, v int) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var cur sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_version").Scan(&cur); err != nil {
		return fmt.Errorf("read version: %w", err)
	}
	if int(cur.Int64) > len(s.d.Migrations) {
		return fmt.Errorf("the database has schema version %d, newer than this program's %d",
			cur.Int64, len(s.d.Migrations))
	}
	if int(cur.Int64) >= v {
		return tx.Commit()
	}
	if int(cur.Int64) != v-1 {
		return errors.New("schema versions out of order")
	}
	for i, stmt := range s.d.Migrations[v-1] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("statement %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
		v, s.opts.Now().UnixMilli()); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
