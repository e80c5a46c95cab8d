// Package mysql is the cluster's model.Store: MySQL or MariaDB (InnoDB)
// through github.com/go-sql-driver/mysql.
//
// Every statement is a server-side prepared statement (the driver's
// interpolateParams stays off); no SQL is built from values. The schema is
// versioned (table schema_version) and migrated by Open under a named lock
// (GET_LOCK), so that servers starting together migrate once. Tables are
// InnoDB, utf8mb4 with the binary collation utf8mb4_bin; case-insensitive
// uniqueness and prefix search use a name_lower VARBINARY column holding Go's
// strings.ToLower of the name, with an index (unique for users).
//
// Sessions run at READ COMMITTED, so that a check inside a transaction sees
// what other servers committed meanwhile. A message's seq is allocated
// under the lock of its conversation's row (SELECT last_seq ... FOR UPDATE,
// then UPDATE) inside the transaction that stores it, so on any number of
// servers seq order is commit order, with no gaps. A batch of messages
// locks its conversations in one order (by key), and a transaction that hits
// a deadlock or lock wait timeout is run again.
//
// When the server is down, calls fail within the dial timeout (or their
// ctx) with an error that is none of model's sentinels (the chat service
// answers 503); the pool reconnects by itself once the server is back.
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"clusterchat/model"
	"clusterchat/model/internal/sqlstore"
)

// Options configure Open. The zero value gives the defaults.
type Options struct {
	// MaxOpenConns bounds the pool. Default 32.
	MaxOpenConns int
	// MaxIdleConns is the number of idle connections kept. Default
	// MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime closes connections older than this. Default 5m.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes connections idle for this long. Default 1m.
	ConnMaxIdleTime time.Duration
	// DialTimeout, ReadTimeout and WriteTimeout are the driver's timeout,
	// readTimeout and writeTimeout, used when the DSN does not set them.
	// Defaults 3s, 15s, 15s.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// MaxBatch is the most messages stored in one transaction. Default 256.
	MaxBatch int
	// BatchWindow is how long the writer waits for more messages after the
	// first of a batch when senders are concurrent. Default 2ms; negative:
	// no wait.
	BatchWindow time.Duration
	// Writers is the number of batching writers, whose transactions run in
	// parallel. Default 1: with the redo log written, not fsynced, at each
	// commit (innodb_flush_log_at_trx_commit=2, the cluster's setting) a
	// commit does not wait for the disk, and MariaDB's cost is per
	// statement and per wake-up more than per row, so fewer writers make
	// larger batches for less. Measured on the cluster (2 servers, 500
	// crossing pairs at 5,000 msg/s, 2-core box, 5 alternating runs each,
	// 1 December 2026): 2 writers per server 4.6-7.3 messages per commit,
	// mariadbd 0.59-0.64 cores, send->delivery p50 7.1-12.3 ms and p99
	// 19.0-84.5 ms (median 30.5); 1 writer 7.1-10.1 messages per commit,
	// 0.54-0.63 cores, p50 5.2-7.8 ms, p99 17.6-33.4 ms (median 24.7).
	// Unpaced the two were within the noise (11.6-12.3k acks/s). A batch
	// that waits for a row lock (a group conversation that another server
	// is writing) holds up the server's other messages until that commit,
	// a few milliseconds; more writers shorten that wait for the others.
	Writers int
	// TxTimeout bounds one batch transaction. Default 10s.
	TxTimeout time.Duration
	// Now is the clock (user, group and token times); default time.Now.
	Now func() time.Time
}

// Store is a model.Store on a MySQL/MariaDB database. Its methods are safe
// for concurrent use.
type Store struct {
	*sqlstore.Store
}

var _ model.Store = (*Store)(nil)

// Open connects to the database of dsn, in the driver's form
// "USER:PASS@tcp(HOST:PORT)/DB?param=value", migrates its schema and starts
// the writer. The database must exist. Close releases it.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := driver.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: open: bad DSN: %w", err)
	}
	if cfg.DBName == "" {
		return nil, errors.New("mysql: open: the DSN names no database")
	}
	if cfg.InterpolateParams || cfg.MultiStatements {
		return nil, errors.New("mysql: open: interpolateParams and multiStatements must stay off")
	}
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDefault(&opts.DialTimeout, 3*time.Second)
	setDefault(&opts.ReadTimeout, 15*time.Second)
	setDefault(&opts.WriteTimeout, 15*time.Second)
	setDefault(&opts.ConnMaxLifetime, 5*time.Minute)
	setDefault(&opts.ConnMaxIdleTime, time.Minute)
	setDefault(&cfg.Timeout, opts.DialTimeout)
	setDefault(&cfg.ReadTimeout, opts.ReadTimeout)
	setDefault(&cfg.WriteTimeout, opts.WriteTimeout)
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 32
	}
	if opts.MaxIdleConns <= 0 {
		opts.MaxIdleConns = opts.MaxOpenConns
	}
	if opts.Writers <= 0 {
		opts.Writers = 1
	}
	cfg.ParseTime = false // times are stored as Unix milliseconds

	// Every session runs at READ COMMITTED (set once per connection rather
	// than per transaction): the variable is tx_isolation on MariaDB before
	// 11.1, transaction_isolation on MySQL 8.
	probe, err := connect(ctx, cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("mysql: open %s/%s: %w", cfg.Addr, cfg.DBName, err)
	}
	isoVar, err := isolationVariable(ctx, probe)
	_ = probe.Close()
	if err != nil {
		return nil, fmt.Errorf("mysql: open %s/%s: %w", cfg.Addr, cfg.DBName, err)
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params[isoVar] = "'READ-COMMITTED'"
	db, err := connect(ctx, cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("mysql: open %s/%s: %w", cfg.Addr, cfg.DBName, err)
	}
	s, err := sqlstore.New(ctx, dialect(), db, db, sqlstore.Options{
		MaxBatch:    opts.MaxBatch,
		BatchWindow: opts.BatchWindow,
		TxTimeout:   opts.TxTimeout,
		Writers:     opts.Writers,
		Now:         opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("mysql: open %s/%s: %w", cfg.Addr, cfg.DBName, err)
	}
	return &Store{s}, nil
}

// connect opens a pool for cfg and checks that it answers.
func connect(ctx context.Context, cfg *driver.Config, opts Options) (*sql.DB, error) {
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxIdleConns)
	db.SetConnMaxLifetime(opts.ConnMaxLifetime)
	db.SetConnMaxIdleTime(opts.ConnMaxIdleTime)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// isolationVariable names the server's session isolation variable.
func isolationVariable(ctx context.Context, db *sql.DB) (string, error) {
	var level string
	err := db.QueryRowContext(ctx, "SELECT @@SESSION.transaction_isolation").Scan(&level)
	if err == nil {
		return "transaction_isolation", nil
	}
	if errNumber(err) != erUnknownSystemVariable {
		return "", fmt.Errorf("read the isolation level: %w", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT @@SESSION.tx_isolation").Scan(&level); err != nil {
		return "", fmt.Errorf("read the isolation level: %w", err)
	}
	return "tx_isolation", nil
}

// Server error numbers.
const (
	erUnknownSystemVariable = 1193
	erDupEntry              = 1062
	erDupEntryWithKey       = 1586
	erLockWaitTimeout       = 1205
	erLockDeadlock          = 1213
	erNoReferencedRow       = 1216
	erNoReferencedRow2      = 1452
)

func errNumber(err error) uint16 {
	var e *driver.MySQLError
	if errors.As(err, &e) {
		return e.Number
	}
	return 0
}

const migrationLock = "clusterchat.schema_migration"

func lockMigrations(ctx context.Context, c *sql.Conn) (func(), error) {
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT GET_LOCK(?, 60)", migrationLock).Scan(&got); err != nil {
		return nil, err
	}
	if got.Int64 != 1 {
		return nil, errors.New("another process holds the migration lock")
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = c.ExecContext(ctx, "DO RELEASE_LOCK(?)", migrationLock)
	}, nil
}

func dialect() *sqlstore.Dialect {
	return &sqlstore.Dialect{
		Name:             "mysql",
		VersionTable:     "CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL PRIMARY KEY, applied BIGINT NOT NULL) " + tableOpts,
		Migrations:       migrations,
		LockMigrations:   lockMigrations,
		ForUpdate:        " FOR UPDATE",
		ConvsByKey:       " FORCE INDEX (convs_key)",
		RowValuesIn:      true,
		InsertConvIgnore: "INSERT INTO convs (group_id, a, b, last_seq) VALUES (?, ?, ?, 0) ON DUPLICATE KEY UPDATE id = id",
		UpsertCursorTail: "ON DUPLICATE KEY UPDATE seq = GREATEST(seq, VALUES(seq))",
		Greatest:         "GREATEST",
		IsUnique: func(err error) bool {
			n := errNumber(err)
			return n == erDupEntry || n == erDupEntryWithKey
		},
		IsForeignKey: func(err error) bool {
			n := errNumber(err)
			return n == erNoReferencedRow || n == erNoReferencedRow2
		},
		IsRetryable: func(err error) bool {
			n := errNumber(err)
			return n == erLockDeadlock || n == erLockWaitTimeout
		},
	}
}

const tableOpts = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

// migrations are the schema versions in order; never edit a released one,
// append a new step. (MySQL commits each DDL statement by itself: a step
// that fails halfway must be repaired by hand, so keep steps small.)
var migrations = [][]string{
	{ // 1: the initial schema
		`CREATE TABLE users (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(1024) NOT NULL,
  name_lower VARBINARY(1536) NOT NULL,
  pass_hash VARBINARY(1024) NOT NULL,
  created BIGINT NOT NULL,
  UNIQUE KEY users_name_lower (name_lower)
) ` + tableOpts,
		`CREATE TABLE tokens (
  hash VARBINARY(255) NOT NULL PRIMARY KEY,
  user_id BIGINT NOT NULL,
  expires BIGINT NOT NULL,
  KEY tokens_user (user_id, expires),
  CONSTRAINT tokens_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ` + tableOpts,
		`CREATE TABLE friends (
  a BIGINT NOT NULL,
  b BIGINT NOT NULL,
  state TINYINT NOT NULL,
  requester BIGINT NOT NULL,
  PRIMARY KEY (a, b),
  KEY friends_b (b),
  CONSTRAINT friends_a_fk FOREIGN KEY (a) REFERENCES users (id),
  CONSTRAINT friends_b_fk FOREIGN KEY (b) REFERENCES users (id)
) ` + tableOpts,
		`CREATE TABLE chat_groups (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(1024) NOT NULL,
  name_lower VARBINARY(1536) NOT NULL,
  descr TEXT NOT NULL,
  owner_id BIGINT NOT NULL,
  created BIGINT NOT NULL,
  KEY chat_groups_name_lower (name_lower),
  CONSTRAINT chat_groups_owner_fk FOREIGN KEY (owner_id) REFERENCES users (id)
) ` + tableOpts,
		`CREATE TABLE group_members (
  mid BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  group_id BIGINT NOT NULL,
  user_id BIGINT NOT NULL,
  joined_seq BIGINT NOT NULL,
  cur BIGINT NOT NULL,
  UNIQUE KEY group_members_group_user (group_id, user_id),
  KEY group_members_user (user_id),
  CONSTRAINT group_members_group_fk FOREIGN KEY (group_id) REFERENCES chat_groups (id),
  CONSTRAINT group_members_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ` + tableOpts,
		`CREATE TABLE convs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  group_id BIGINT NOT NULL,
  a BIGINT NOT NULL,
  b BIGINT NOT NULL,
  last_seq BIGINT NOT NULL,
  UNIQUE KEY convs_key (group_id, a, b)
) ` + tableOpts,
		`CREATE TABLE messages (
  conv_id BIGINT NOT NULL,
  seq BIGINT NOT NULL,
  sender BIGINT NOT NULL,
  from_name VARCHAR(1024) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  cid VARBINARY(255) NOT NULL,
  sent_at BIGINT NOT NULL,
  PRIMARY KEY (conv_id, seq),
  UNIQUE KEY messages_sender_cid (sender, cid),
  CONSTRAINT messages_conv_fk FOREIGN KEY (conv_id) REFERENCES convs (id),
  CONSTRAINT messages_sender_fk FOREIGN KEY (sender) REFERENCES users (id)
) ` + tableOpts,
		`CREATE TABLE cursors (
  user_id BIGINT NOT NULL,
  conv_id BIGINT NOT NULL,
  seq BIGINT NOT NULL,
  PRIMARY KEY (user_id, conv_id),
  KEY cursors_conv (conv_id),
  CONSTRAINT cursors_user_fk FOREIGN KEY (user_id) REFERENCES users (id),
  CONSTRAINT cursors_conv_fk FOREIGN KEY (conv_id) REFERENCES convs (id)
) ` + tableOpts,
	},
	{ // 2: failed password logins, for the cluster-wide login throttle
		`CREATE TABLE login_failures (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  user_id BIGINT NOT NULL,
  at_ms BIGINT NOT NULL,
  KEY login_failures_user_at (user_id, at_ms),
  CONSTRAINT login_failures_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ` + tableOpts,
	},
}
