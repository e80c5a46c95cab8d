package testenv

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" database/sql driver
)

// MariaDBOptions tunes StartMariaDBWith. The zero value is what StartMariaDB
// uses.
type MariaDBOptions struct {
	// Port to listen on (127.0.0.1 only); 0 picks a free port.
	Port int
	// Detach keeps mariadbd running after this program exits (see
	// ProcessSpec.Detach).
	Detach bool
	// ExtraArgs are appended to the mariadbd command line, after the
	// defaults (serverOptions), which they may override (e.g.
	// "--innodb-flush-log-at-trx-commit=1" for an fsync per commit).
	ExtraArgs []string
	// ReadyTimeout bounds the wait for the first answered query when ctx has
	// no earlier deadline (default 60s).
	ReadyTimeout time.Duration
}

// MariaDB is a private mariadbd: its own datadir, socket and pid file under
// Dir, listening on 127.0.0.1:Port, user root with no password over TCP.
// Methods are safe for concurrent use.
type MariaDB struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds data/, the socket (when the path is short enough), the pid
	// file and the logs (mariadbd.err, mariadbd.log).
	Dir string
	// DataDir is Dir/data.
	DataDir string
	// Socket is the unix socket path.
	Socket string

	opts MariaDBOptions
	bin  string

	mu   sync.Mutex
	proc *Process
}

// StartMariaDB initialises a datadir under dir (unless one is already there),
// starts mariadbd on a free loopback port and waits until a query answers.
func StartMariaDB(ctx context.Context, dir string) (*MariaDB, error) {
	return StartMariaDBWith(ctx, dir, MariaDBOptions{})
}

// StartMariaDBWith is StartMariaDB with options.
func StartMariaDBWith(ctx context.Context, dir string, opts MariaDBOptions) (*MariaDB, error) {
	bin, err := lookBinary("mariadbd", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
	if err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("testenv: mariadb dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("testenv: mariadb dir: %w", err)
	}
	m := &MariaDB{Dir: dir, DataDir: filepath.Join(dir, "data"), opts: opts, bin: bin}
	if m.Socket, err = socketPath(dir, "mysqld.sock"); err != nil {
		return nil, err
	}
	if err := m.install(ctx); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		m.Port = opts.Port
		if m.Port == 0 {
			if m.Port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		err = m.start(ctx)
		if err == nil {
			return m, nil
		}
		// A free port may have been taken in between: retry with another.
		if opts.Port != 0 || attempt == 2 || !errors.Is(err, ErrExited) {
			return nil, err
		}
	}
}

// socketPath returns dir/name, or a path in a fresh short temporary
// directory when dir/name is too long for a unix socket (108 bytes).
func socketPath(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if len(p) < 100 {
		return p, nil
	}
	short, err := os.MkdirTemp("", "testenv-sock-")
	if err != nil {
		return "", fmt.Errorf("testenv: socket dir: %w", err)
	}
	return filepath.Join(short, name), nil
}

// install runs mariadb-install-db unless DataDir already holds a database.
func (m *MariaDB) install(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(m.DataDir, "mysql")); err == nil {
		return nil
	}
	bin, err := lookBinary("mariadb-install-db", "/usr/bin/mariadb-install-db", "mysql_install_db")
	if err != nil {
		return err
	}
	args := []string{
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	p, err := StartProcess(ProcessSpec{
		Name:    "mariadb-install-db",
		Path:    bin,
		Args:    args,
		Dir:     m.Dir,
		LogFile: filepath.Join(m.Dir, "install.log"),
	})
	if err != nil {
		return err
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		_ = p.Kill()
		return fmt.Errorf("testenv: mariadb-install-db: %w", ctx.Err())
	}
	if err := p.ExitErr(); err != nil {
		return fmt.Errorf("testenv: mariadb-install-db --datadir=%s: %w; log:\n%s", m.DataDir, err, tailFile(p.spec.LogFile, 2048))
	}
	return nil
}

// serverOptions are the InnoDB and connection options of every private
// mariadbd, tuned for the chat store's load (many small transactions from
// a few connections) on a small machine:
//
//   - innodb_flush_log_at_trx_commit=2: a commit writes its redo log to the
//     operating system (write(2)) before it returns, and the log is fsynced
//     about once a second. A committed transaction survives a crash or
//     SIGKILL of mariadbd, as the redo log is in the kernel's page cache;
//     an operating-system crash or power loss may lose the last second of
//     commits. This is the durability of the one-node store (SQLite WAL
//     with synchronous=NORMAL: survives a process crash, not power loss).
//     With =1 every commit waited for an fsync: measured on the cluster,
//     150-300 fsyncs/s and COMMIT taking 8.7-11 ms on average (up to 400
//     ms) on the loaded 2-core box, against 3.3-4 ms with =2.
//   - skip-log-bin: no binary log (no replica reads it; MariaDB's default,
//     stated so that a my.cnf cannot turn it on: --no-defaults is used too).
//   - thread_handling=pool-of-threads: a pool of about one thread per CPU
//     runs the statements of all connections instead of a thread per
//     connection, so two cores switch far less between mariadbd threads
//     (a third of mariadbd's samples were in task switching); measured on
//     the cluster, mariadbd CPU per message 78-99 -> 63-70 us.
var serverOptions = []string{
	"--innodb-flush-log-at-trx-commit=2",
	"--skip-log-bin",
	"--thread-handling=pool-of-threads",
}

// args is the mariadbd command line.
func (m *MariaDB) args() []string {
	args := []string{
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--socket=" + m.Socket,
		"--port=" + strconv.Itoa(m.Port),
		"--bind-address=127.0.0.1",
		"--pid-file=" + filepath.Join(m.Dir, "mariadbd.pid"),
		"--log-error=" + filepath.Join(m.Dir, "mariadbd.err"),
		"--skip-name-resolve",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_unicode_ci",
		"--max-connections=2000",
		"--max-allowed-packet=64M",
		"--innodb-buffer-pool-size=128M",
	}
	args = append(args, serverOptions...)
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	return append(args, m.opts.ExtraArgs...)
}

// start launches mariadbd on m.Port and waits for a query to answer.
func (m *MariaDB) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && m.proc.Running() {
		return fmt.Errorf("testenv: mariadb on port %d is already running (pid %d)", m.Port, m.proc.Pid())
	}
	p, err := StartProcess(ProcessSpec{
		Name:        "mariadbd",
		Path:        m.bin,
		Args:        m.args(),
		Dir:         m.Dir,
		LogFile:     filepath.Join(m.Dir, "mariadbd.log"),
		Detach:      m.opts.Detach,
		StopTimeout: 60 * time.Second,
	})
	if err != nil {
		return err
	}
	timeout := m.opts.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err = p.WaitReady(rctx, m.ping)
	if err != nil {
		_ = p.Stop()
		if errors.Is(err, ErrExited) {
			err = fmt.Errorf("%w; mariadbd.err ends:\n%s", err, tailFile(filepath.Join(m.Dir, "mariadbd.err"), 2048))
		}
		return err
	}
	m.proc = p
	return nil
}

// ping opens a fresh connection and runs a real query.
func (m *MariaDB) ping(ctx context.Context) error {
	db, err := sql.Open("mysql", m.DSN("")+"&timeout=1s")
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("SELECT 1: %w", err)
	}
	return nil
}

// Addr returns "127.0.0.1:PORT".
func (m *MariaDB) Addr() string { return portAddr(m.Port) }

// DSN returns the go-sql-driver/mysql data source name for database db (may
// be empty): "root@tcp(127.0.0.1:PORT)/db?parseTime=false". More parameters
// may be appended with "&".
func (m *MariaDB) DSN(db string) string {
	return fmt.Sprintf("root@tcp(%s)/%s?parseTime=false", m.Addr(), db)
}

// StoreURL returns the chatserver --store value for database db:
// "mysql://root@tcp(127.0.0.1:PORT)/db".
func (m *MariaDB) StoreURL(db string) string {
	return fmt.Sprintf("mysql://root@tcp(%s)/%s", m.Addr(), db)
}

var dbNameRE = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// CreateDatabase creates database name (utf8mb4) if it does not exist. The
// name must be 1-64 letters, digits or underscores.
func (m *MariaDB) CreateDatabase(ctx context.Context, name string) error {
	if !dbNameRE.MatchString(name) {
		return fmt.Errorf("testenv: create database %q: name must match %s", name, dbNameRE)
	}
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		return fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	defer db.Close()
	q := "CREATE DATABASE IF NOT EXISTS `" + name + "` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("testenv: create database %s: %w", name, err)
	}
	return nil
}

// Pid returns the pid of the running mariadbd, or 0 when it is stopped.
func (m *MariaDB) Pid() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc == nil || !m.proc.Running() {
		return 0
	}
	return m.proc.Pid()
}

// Process returns the running mariadbd process, or nil when stopped.
func (m *MariaDB) Process() *Process {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// Stop sends SIGTERM to this mariadbd (its own pid) and waits until it has
// exited (SIGKILL after 60s). The datadir is kept: Restart starts it again
// on the same port. Stop on a stopped server is a no-op.
func (m *MariaDB) Stop() error {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Stop(); err != nil {
		return fmt.Errorf("testenv: stop mariadb on port %d: %w", m.Port, err)
	}
	return nil
}

// Kill sends SIGKILL to this mariadbd and waits until it has exited (a
// crash, for fault tests). Restart recovers it.
func (m *MariaDB) Kill() error {
	m.mu.Lock()
	p := m.proc
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Kill()
}

// Restart stops the server if it is running and starts it again on the same
// datadir and port, waiting until a query answers.
func (m *MariaDB) Restart(ctx context.Context) error {
	if err := m.Stop(); err != nil {
		return err
	}
	if err := m.start(ctx); err != nil {
		return fmt.Errorf("testenv: restart mariadb on port %d: %w", m.Port, err)
	}
	return nil
}
