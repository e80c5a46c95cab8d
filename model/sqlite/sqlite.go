// Package sqlite is the embedded model.Store: one SQLite file through
// github.com/mattn/go-sqlite3 (cgo; modernc.org/sqlite, SQLite transpiled
// to Go, in a build without cgo: see driver.go).
//
// The file is in WAL mode with foreign keys on and a busy timeout. Writes go
// through one connection (SQLite has one writer at a time; its transactions
// begin IMMEDIATE so that they never have to upgrade a read lock), reads
// through a pool of read-only connections, which WAL lets run beside the
// writer. Schema migrations are versioned (table schema_version) and run by
// Open.
//
// Durability: StoreMessage answers after COMMIT. With the default
// synchronous=NORMAL in WAL mode a committed transaction survives the crash
// (even SIGKILL) of the process, because it is in the WAL file that the
// operating system holds; only a power loss or kernel crash may lose the
// last transactions before the next checkpoint. Options.Synchronous "FULL"
// fsyncs the WAL at every commit and survives power loss too, at a cost in
// throughput that the batching writer mostly hides.
//
// Throughput: this process is the file's only writer, so the batching writer
// keeps each conversation's (id, last_seq) in memory between transactions
// (checked against PRAGMA data_version at the start of each, so a write by
// another connection empties it) instead of reading it per batch; a batch
// of messages is a few multi-row statements (see model/internal/sqlstore,
// batch.go, for the figures). The writer's statement journal is in memory,
// its page cache 64 MiB, and a background connection copies the WAL into
// the file every 100ms (Options.CheckpointInterval), so that checkpoints
// and their fsyncs leave the writer's commits. On the 2-core box, 64
// concurrent senders cost about 26 µs of CPU per message in distinct
// conversations and 20 µs in one group (from 49 and 26 µs before).
//
// Driver: github.com/mattn/go-sqlite3 runs SQLite's C code through cgo;
// modernc.org/sqlite, the same code transpiled to Go, cost 25-50% more CPU
// per message in BenchmarkStoreMessage (256 senders) and about 40% more in
// BenchmarkLoginReads (see driver_cgo.go for the version pin). In the server
// (chatbench pairs 500 unpaced, box load 9-12 from other jobs) the writer
// goroutine went from 33-37 to 26-28 µs of CPU per message, and the
// checkpointer from 5-6 µs to too little to see in the profile; the WAL's
// pwrite(2) calls and checksums, about two pages per message in distinct
// conversations, are now most of what is left. The writer's connection
// writes the WAL through a VFS shim (walbuf_cgo.go) that gives a
// transaction's frames to the kernel in one pwrite(2), not two per frame:
// BenchmarkStoreMessage (NORMAL, own conversations) 43-44 -> 37-39 us per
// message with 64 senders and 22-24 -> 19-20 us with 256, and the server
// at 10,000 msg/s 96-103 -> 88-95 us of CPU per message, pwrite(2) calls
// 7.9 -> 1.7 per message (the rest are the checkpoint's). A build without cgo
// (CGO_ENABLED=0, or no C compiler) falls back to modernc.org/sqlite.
package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/model"
	"clusterchat/model/internal/sqlstore"
)

// Options configure Open. The zero value gives the defaults.
type Options struct {
	// Synchronous is the synchronous pragma: "NORMAL" (default) or "FULL".
	Synchronous string
	// BusyTimeout is how long a statement waits for a lock that another
	// process holds. Default 5s.
	BusyTimeout time.Duration
	// Readers is the size of the read-only pool. Default 4.
	Readers int
	// MaxBatch is the most messages stored in one transaction. Default 256.
	MaxBatch int
	// BatchWindow is how long the writer waits for more messages after the
	// first of a batch when senders are concurrent. Default 2ms; negative:
	// no wait.
	BatchWindow time.Duration
	// TxTimeout bounds one batch transaction. Default 10s.
	TxTimeout time.Duration
	// Now is the clock (user, group and token times); default time.Now.
	Now func() time.Time
	// CheckpointInterval is how often a background connection copies the
	// WAL into the database file. Default 100ms; negative: no background
	// checkpoints (the writer checkpoints at SQLite's default 1000 pages,
	// inside a commit).
	CheckpointInterval time.Duration
	// WALRestartFrames is the WAL size, in frames, from which the writer
	// completes the checkpointer's work between two batches so that the
	// WAL starts over (see restartFrames). Default 16384 (64 MiB of 4 KiB
	// pages); ignored without background checkpoints. The writer's backstop
	// checkpoint (wal_autocheckpoint, inside a COMMIT, should the
	// checkpointer fall behind) is at twice the larger of this and the
	// default.
	WALRestartFrames int
	// WALSizeLimit is the size, in bytes, the WAL file is cut back to when
	// SQLite starts it over after a complete checkpoint (journal_size_limit);
	// without it the file keeps the size of the busiest moment for good.
	// Default: the backstop's size (twice the larger of WALRestartFrames
	// and its default, in 4 KiB pages with their frame headers: ~135 MB by
	// default), so that a WAL is cut back only after it reached the
	// backstop; negative: no limit. Busy, the -wal file beside the
	// database grows to ~70-95 MB between start-overs and keeps that size
	// while idle; it is larger only while a start-over cannot happen (a
	// reader holds an old snapshot). A restart after a crash may read all
	// of it.
	WALSizeLimit int64
}

// Store is a model.Store on an SQLite file. Its methods are safe for
// concurrent use.
type Store struct {
	*sqlstore.Store
	ckpt      *sql.DB     // the checkpointer's connection, nil when off
	restart   *walRestart // the checkpointer's requests to the writer, and the checkpoints' counters
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ model.Store = (*Store)(nil)

// Open opens (creating when absent) the database file at path, migrates its
// schema to the newest version and starts the writer. Close releases it.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	return open(ctx, path, opts, newDriver())
}

func open(ctx context.Context, path string, opts Options, drv sqlDriver) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: give the path of a database file", path)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: open %q: the path may not contain '?' or '#'", path)
	}
	syncMode := strings.ToUpper(opts.Synchronous)
	switch syncMode {
	case "":
		syncMode = "NORMAL"
	case "NORMAL", "FULL":
	default:
		return nil, fmt.Errorf("sqlite: open %q: synchronous must be NORMAL or FULL, not %q", path, opts.Synchronous)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10))
	q.Set("_foreign_keys", "1")
	for k, v := range drv.params {
		q.Set(k, v)
	}
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	wq.Set("_synchronous", syncMode)
	wq.Set("_txlock", "immediate")
	if drv.writerVFS != nil {
		vfs, err := drv.writerVFS()
		if err != nil {
			return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
		}
		wq.Set("vfs", vfs)
	}
	wp := []string{
		"PRAGMA journal_mode = WAL",
		// A multi-row INSERT keeps a statement journal (to undo the
		// statement when a row breaks a key); in memory, not in a
		// temporary file.
		"PRAGMA temp_store = MEMORY",
		// The writer's page cache stays valid between its transactions (no
		// other connection writes); 64 MiB rather than SQLite's 2 MiB keeps
		// the hot leaves of many conversations without re-reading them.
		"PRAGMA cache_size = -65536",
	}
	if opts.WALRestartFrames <= 0 || opts.CheckpointInterval < 0 {
		opts.WALRestartFrames = restartFrames // not used without the checkpointer
	}
	backstop, walLimit := walBounds(opts.WALRestartFrames, opts.WALSizeLimit)
	if walLimit > 0 {
		wp = append(wp, fmt.Sprintf("PRAGMA journal_size_limit = %d", walLimit))
	}
	cq := url.Values{}
	for k, v := range q {
		cq[k] = v
	}
	if opts.CheckpointInterval >= 0 {
		// The checkpointer copies the WAL into the file; the writer does
		// only when it falls far behind.
		wp = append(wp, fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", backstop))
	}
	q.Set("_query_only", "1")

	w := drv.open(path+"?"+wq.Encode(), wp...)
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The writer connection creates the file and turns WAL on before any
	// reader opens it.
	if err := w.PingContext(ctx); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	r := drv.open(path + "?" + q.Encode())
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	restart := &walRestart{frames: opts.WALRestartFrames}
	so := sqlstore.Options{
		MaxBatch:    opts.MaxBatch,
		BatchWindow: opts.BatchWindow,
		TxTimeout:   opts.TxTimeout,
		Now:         opts.Now,
	}
	if opts.CheckpointInterval >= 0 {
		so.BetweenBatches = restart.complete
	}
	s, err := sqlstore.New(ctx, dialect(drv), w, r, so)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %q: %w", path, err)
	}
	st := &Store{Store: s, restart: restart}
	if opts.CheckpointInterval >= 0 {
		interval := opts.CheckpointInterval
		if interval == 0 {
			interval = 100 * time.Millisecond
		}
		c := drv.open(path + "?" + cq.Encode())
		c.SetMaxOpenConns(1)
		st.ckpt = c
		st.stop = make(chan struct{})
		st.done = make(chan struct{})
		go st.checkpointer(interval)
	}
	return st, nil
}

// checkpointer runs a PASSIVE checkpoint every interval on its own
// connection, so that copying the WAL into the database file (and its
// fsyncs) happens beside the writer rather than inside one of its commits.
// A passive checkpoint takes no lock that the writer or the readers wait
// for; durability does not depend on it (a commit is durable in the WAL).
func (s *Store) checkpointer(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if _, frames, _, err := s.restart.stats.checkpoint(&s.restart.stats.background, s.ckpt); err == nil {
			s.restart.check(frames)
		} // on an error the next tick tries again
	}
}

// walBounds returns the writer's backstop checkpoint (wal_autocheckpoint,
// in pages) and the WAL's size limit (journal_size_limit, in bytes; limit
// when set) for a WAL that starts over at restart frames: both stay above
// the start-over size, however large it is set, so that they do not
// pre-empt it.
func walBounds(restart int, limit int64) (backstop int, walLimit int64) {
	backstop = 2 * max(restart, restartFrames)
	walLimit = limit
	if walLimit == 0 {
		walLimit = int64(backstop) * (4096 + 24) // pages with their frame headers
	}
	return backstop, walLimit
}

// restartFrames is the default WAL size (in frames) from which the writer
// completes the checkpoint between batches, so that SQLite starts the WAL
// over. A passive checkpoint beside a busy writer never copies the last
// frames (more arrive while it runs), and SQLite writes a new WAL from the
// start only after a checkpoint that copied all: without this, the WAL grew
// to the backstop (then 16,384 pages) and the writer checkpointed inside a
// COMMIT, copying up to a checkpointer interval of frames and syncing
// twice. Measured at 10,000 msg/s (chatbench pairs 500 at 20/s): the WAL
// grew ~35,000 frames/s, and every start-over (about two a second) was a
// COMMIT of 11-15 ms, against a message's p50 of ~4 ms. With the writer's
// completing checkpoint (then at 8,192 frames) that took 4.5-10 ms, between
// batches, about three times a second; send->delivery p99 in 4 alternating
// runs 23.1-39.2 ms (median 24.2) against 26.3-30.4 ms (median 28.5)
// before.
//
// That checkpoint costs its fsyncs, of the frames written since the
// checkpointer's pass (about 4 ms per MB on this disk), not the WAL's size,
// so a larger WAL halves the stalls without lengthening them: 16,384 frames
// (64 MiB) rather than 8,192, with the backstop and the size limit
// doubled. Alternating pairs (round 14), 8,192 against 16,384: unpaced,
// 17,256 / 19,098 / 18,386 against 19,938 / 19,818 / 21,269 acks/s (server
// CPU 59-64 against 56-58 µs per message; 28-33 against 19-21 of the
// writer's checkpoints in 8 s, ~17 ms each); at 10,000 msg/s,
// send->delivery p99 44.6 / 18.3 / 20.5 / 24.6 / 23.5 / 20.3 against 28.6 /
// 16.8 / 15.7 / 19.2 / 23.2 / 21.2 ms (29-32 against 16-17 checkpoints in
// 10 s, 9-13 ms each).
const restartFrames = 16384

// passiveCheckpoint runs a PASSIVE checkpoint on db and returns SQLite's
// answer: busy (another checkpoint held the lock), the WAL's frames, and
// how many of them are now in the database file.
func passiveCheckpoint(db *sql.DB) (busy, frames, copied int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
	return busy, frames, copied, err
}

// walRestart is the hand-off between the checkpointer (check) and the
// writer (complete).
type walRestart struct {
	frames    int                // the WAL size from which the writer is asked
	stats     checkpointCounters // of the checkpointer's and the writer's checkpoints
	want      atomic.Bool        // set by the checkpointer, taken by the writer
	completed atomic.Int64       // the WAL size the writer last checkpointed completely
}

// check asks the writer to complete the checkpoint when the WAL holds
// frames of at least r.frames, unless it is the WAL the writer has just
// checkpointed completely (which starts over at its next transaction by
// itself).
func (r *walRestart) check(frames int) {
	if frames >= r.frames && int64(frames) != r.completed.Load() {
		r.want.Store(true)
	}
}

// complete runs on the writer's goroutine between batches
// (sqlstore.Options.BetweenBatches): when the checkpointer has asked, a
// passive checkpoint on the writer's own connection copies the few frames
// written since the checkpointer's pass. No batch runs beside it, so it
// copies every frame (unless a reader still needs old ones), and the
// writer's next transaction starts the WAL over.
func (r *walRestart) complete(w *sql.DB) {
	if !r.want.CompareAndSwap(true, false) {
		return
	}
	busy, frames, copied, err := r.stats.checkpoint(&r.stats.restarts, w)
	switch {
	case err == nil && busy != 0:
		// The checkpointer holds the checkpoint lock: try again after
		// the next batch.
		r.want.Store(true)
	case err == nil && copied == frames:
		r.completed.Store(int64(frames))
	}
	// On an error the checkpointer asks again while the WAL stays large.
}

// checkpointCounters back Store.CheckpointStats.
type checkpointCounters struct {
	background, restarts checkpointKind
	busy, errors         atomic.Int64
	walFrames            atomic.Int64
}

// checkpointKind counts the checkpoints of one kind and their time.
type checkpointKind struct {
	n     atomic.Int64
	nanos atomic.Int64
}

// checkpoint runs a passive checkpoint on db (passiveCheckpoint) and
// counts it as one of kind.
func (c *checkpointCounters) checkpoint(kind *checkpointKind, db *sql.DB) (busy, frames, copied int, err error) {
	start := time.Now()
	busy, frames, copied, err = passiveCheckpoint(db)
	kind.n.Add(1)
	kind.nanos.Add(int64(time.Since(start)))
	switch {
	case err != nil:
		c.errors.Add(1)
	case busy != 0:
		c.busy.Add(1)
	default:
		c.walFrames.Store(int64(frames))
	}
	return busy, frames, copied, err
}

// CheckpointStats returns the counters of the store's WAL checkpoints.
// Safe for concurrent use.
func (s *Store) CheckpointStats() model.CheckpointStats {
	c := &s.restart.stats
	return model.CheckpointStats{
		Background:        c.background.n.Load(),
		BackgroundSeconds: time.Duration(c.background.nanos.Load()).Seconds(),
		Restarts:          c.restarts.n.Load(),
		RestartSeconds:    time.Duration(c.restarts.nanos.Load()).Seconds(),
		Busy:              c.busy.Load(),
		Errors:            c.errors.Load(),
		WALFrames:         c.walFrames.Load(),
	}
}

// Close stops the checkpointer, stores the queued messages and closes the
// database (whose last connection checkpoints the WAL). Idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.ckpt != nil {
			close(s.stop)
			<-s.done
			_ = s.ckpt.Close()
		}
	})
	return s.Store.Close()
}

func dialect(drv sqlDriver) *sqlstore.Dialect {
	return &sqlstore.Dialect{
		Name:             "sqlite",
		VersionTable:     "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)",
		Migrations:       migrations,
		ForUpdate:        "", // the write transaction is exclusive (BEGIN IMMEDIATE, one writer)
		InsertConvIgnore: "INSERT INTO convs (group_id, a, b, last_seq) VALUES (?, ?, ?, 0) ON CONFLICT (group_id, a, b) DO NOTHING",
		UpsertCursorTail: "ON CONFLICT (user_id, conv_id) DO UPDATE SET seq = MAX(seq, excluded.seq)",
		Greatest:         "MAX",
		MaxInsertRows:    drv.insertRows,
		Exclusive:        true, // one writer connection; see the conversation cache in sqlstore
		DataVersion:      "PRAGMA data_version",
		IsUnique: func(err error) bool {
			c, ok := drv.code(err)
			return ok && (c == codeUnique || c == codePrimaryKey)
		},
		IsForeignKey: func(err error) bool {
			c, ok := drv.code(err)
			return ok && c == codeForeignKey
		},
		IsRetryable: func(err error) bool {
			c, ok := drv.code(err)
			return ok && (c&codePrimaryMask == codeBusy || c&codePrimaryMask == codeLocked)
		},
	}
}

// migrations are the schema versions in order; never edit a released one,
// append a new step.
var migrations = [][]string{
	{ // 1: the initial schema
		`CREATE TABLE users (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_lower TEXT NOT NULL,
  pass_hash BLOB NOT NULL,
  created INTEGER NOT NULL
)`,
		`CREATE UNIQUE INDEX users_name_lower ON users (name_lower)`,
		`CREATE TABLE tokens (
  hash BLOB PRIMARY KEY,
  user_id INTEGER NOT NULL REFERENCES users (id),
  expires INTEGER NOT NULL
)`,
		`CREATE INDEX tokens_user ON tokens (user_id, expires)`,
		`CREATE TABLE friends (
  a INTEGER NOT NULL REFERENCES users (id),
  b INTEGER NOT NULL REFERENCES users (id),
  state INTEGER NOT NULL,
  requester INTEGER NOT NULL,
  PRIMARY KEY (a, b)
) WITHOUT ROWID`,
		`CREATE INDEX friends_b ON friends (b)`,
		`CREATE TABLE chat_groups (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  name_lower TEXT NOT NULL,
  descr TEXT NOT NULL,
  owner_id INTEGER NOT NULL REFERENCES users (id),
  created INTEGER NOT NULL
)`,
		`CREATE INDEX chat_groups_name_lower ON chat_groups (name_lower)`,
		`CREATE TABLE group_members (
  mid INTEGER PRIMARY KEY AUTOINCREMENT,
  group_id INTEGER NOT NULL REFERENCES chat_groups (id),
  user_id INTEGER NOT NULL REFERENCES users (id),
  joined_seq INTEGER NOT NULL,
  cur INTEGER NOT NULL
)`,
		`CREATE UNIQUE INDEX group_members_group_user ON group_members (group_id, user_id)`,
		`CREATE INDEX group_members_user ON group_members (user_id)`,
		`CREATE TABLE convs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  group_id INTEGER NOT NULL,
  a INTEGER NOT NULL,
  b INTEGER NOT NULL,
  last_seq INTEGER NOT NULL
)`,
		`CREATE UNIQUE INDEX convs_key ON convs (group_id, a, b)`,
		`CREATE TABLE messages (
  conv_id INTEGER NOT NULL REFERENCES convs (id),
  seq INTEGER NOT NULL,
  sender INTEGER NOT NULL REFERENCES users (id),
  from_name TEXT NOT NULL,
  body TEXT NOT NULL,
  cid TEXT NOT NULL,
  sent_at INTEGER NOT NULL,
  PRIMARY KEY (conv_id, seq)
) WITHOUT ROWID`,
		`CREATE UNIQUE INDEX messages_sender_cid ON messages (sender, cid)`,
		`CREATE TABLE cursors (
  user_id INTEGER NOT NULL REFERENCES users (id),
  conv_id INTEGER NOT NULL REFERENCES convs (id),
  seq INTEGER NOT NULL,
  PRIMARY KEY (user_id, conv_id)
) WITHOUT ROWID`,
	},
	{ // 2: failed password logins, for the cluster-wide login throttle
		`CREATE TABLE login_failures (
  user_id INTEGER NOT NULL REFERENCES users (id),
  at_ms INTEGER NOT NULL
)`,
		`CREATE INDEX login_failures_user_at ON login_failures (user_id, at_ms)`,
	},
}
