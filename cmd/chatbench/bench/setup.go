package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/client"
)

// user is one benchmark account and (while connected) its connection.
type user struct {
	idx   int
	name  string
	id    int64
	addr  string
	token string
	conn  *client.Conn
	lc    *leanConn // conn's socket when rx is set (traffic scenarios)
	rx    *receiver // nil: pushes are only counted
}

func (r *run) userName(i int) string { return r.prefix + "_" + strconv.Itoa(i) }

// addrOf spreads users round-robin over --addr, so that with two servers
// the two users of a pair (2p, 2p+1) are on different servers.
func (r *run) addrOf(i int) string { return r.cfg.Addrs[i%len(r.cfg.Addrs)] }

// reqCtx bounds one request by --timeout.
func (r *run) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.Timeout)
}

// dial connects u to its server. Pushes go to u.rx when set, else they are
// counted and dropped. With u.rx the client library runs over chatbench's
// own reader and writer (u.lc, see leanConn).
func (r *run) dial(ctx context.Context, u *user) (*client.Conn, error) {
	h := func(client.Push) { r.st.otherPushes.Add(1) }
	if u.rx != nil {
		h = u.rx.onPush
	}
	dctx, cancel := r.reqCtx(ctx)
	defer cancel()
	opts := []client.Option{
		client.WithDialTimeout(r.cfg.Timeout),
		client.WithPushBuffer(1), // the handler takes every push
		client.WithPushHandler(h),
	}
	if !r.cfg.ProxyProtocol && u.rx == nil {
		c, err := client.Dial(dctx, u.addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", u.name, err)
		}
		return c, nil
	}
	d := net.Dialer{Timeout: r.cfg.Timeout}
	nc, err := d.DialContext(dctx, "tcp", u.addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", u.name, u.addr, err)
	}
	if r.cfg.ProxyProtocol {
		if err := writeProxyHeader(nc, r.cfg.Timeout); err != nil {
			nc.Close()
			return nil, fmt.Errorf("connect %s to %s: %w", u.name, u.addr, err)
		}
	}
	if u.rx != nil {
		u.lc = newLeanConn(r, nc, u.rx)
		return client.NewConn(u.lc, opts...), nil
	}
	return client.NewConn(nc, opts...), nil
}

// writeProxyHeader sends a PROXY protocol v1 header naming the
// connection's own addresses, as nginx would in front of a server started
// with --proxy-protocol.
func writeProxyHeader(nc net.Conn, timeout time.Duration) error {
	la, ok1 := nc.LocalAddr().(*net.TCPAddr)
	ra, ok2 := nc.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return fmt.Errorf("PROXY header: not a TCP connection")
	}
	fam := "TCP4"
	if la.IP.To4() == nil {
		fam = "TCP6"
	}
	hdr := fmt.Sprintf("PROXY %s %s %s %d %d\r\n", fam, la.IP, ra.IP, la.Port, ra.Port)
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(nc, hdr); err != nil {
		return fmt.Errorf("write PROXY header: %w", err)
	}
	_ = nc.SetWriteDeadline(time.Time{})
	return nil
}

// parallel runs f(i) for every i in [0, n), at most conc at once, and
// returns the first error (the others stop early through ctx).
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	if conc > n {
		conc = n
	}
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					errOnce.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// setupUsers registers users [0, n) and logs each in on its own
// connection. With keep the connections stay open (pushes to rxFor(i));
// without, they are closed after the login and only the tokens are kept.
func (r *run) setupUsers(ctx context.Context, n int, keep bool, rxFor func(i int) *receiver) ([]*user, error) {
	users := make([]*user, n)
	var done atomic.Int64
	r.setPhase("setup", func() string { return fmt.Sprintf("users %d/%d", done.Load(), n) })
	err := parallel(ctx, n, r.cfg.SetupConc, func(ctx context.Context, i int) error {
		u := &user{idx: i, name: r.userName(i), addr: r.addrOf(i)}
		if rxFor != nil {
			u.rx = rxFor(i)
		}
		c, err := r.dial(ctx, u)
		if err != nil {
			return err
		}
		rctx, cancel := r.reqCtx(ctx)
		defer cancel()
		pu, err := c.Register(rctx, u.name, r.cfg.Password)
		if err != nil {
			c.Close()
			return fmt.Errorf("register %s on %s: %w", u.name, u.addr, err)
		}
		u.id = pu.ID
		lr, err := c.LoginPassword(rctx, u.name, r.cfg.Password)
		if err != nil {
			c.Close()
			return fmt.Errorf("login %s on %s: %w", u.name, u.addr, err)
		}
		u.token = lr.Token
		if keep {
			u.conn = c
		} else {
			c.Close()
		}
		users[i] = u
		done.Add(1)
		return nil
	})
	if err != nil {
		closeAll(users)
		return nil, fmt.Errorf("setup: %w", err)
	}
	return users, nil
}

// closeAll closes every open connection of users, in parallel.
func closeAll(users []*user) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, u := range users {
		if u == nil || u.conn == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(c *client.Conn) {
			defer wg.Done()
			c.Close()
			<-sem
		}(u.conn)
		u.conn = nil
	}
	wg.Wait()
}

// befriend makes a and b friends: a asks, b accepts.
func (r *run) befriend(ctx context.Context, a, b *user) error {
	rctx, cancel := r.reqCtx(ctx)
	defer cancel()
	st, err := a.conn.AddFriend(rctx, b.id)
	if err != nil {
		return fmt.Errorf("%s ADD_FRIEND %s: %w", a.name, b.name, err)
	}
	if st == "friends" {
		return nil
	}
	if err := b.conn.AcceptFriend(rctx, a.id); err != nil {
		return fmt.Errorf("%s ACCEPT_FRIEND %s: %w", b.name, a.name, err)
	}
	return nil
}

// savedUser is one line of a --users file.
type savedUser struct {
	Name  string `json:"name"`
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// tokenUsers returns n users with login tokens and no connection: the
// first n of cfg.UsersFile when that file exists (written by an earlier
// run against the same database), else users registered now, then written
// to cfg.UsersFile when it is set. Users are spread over --addr by index.
func (r *run) tokenUsers(ctx context.Context, n int) ([]*user, error) {
	if path := r.cfg.UsersFile; path != "" {
		users, err := loadUsers(path)
		switch {
		case err == nil && len(users) < n:
			return nil, fmt.Errorf("%w: --users %s holds %d users, the scenario needs %d", ErrUsage, path, len(users), n)
		case err == nil:
			users = users[:n]
			for i, u := range users {
				u.idx, u.addr = i, r.addrOf(i)
			}
			r.logf("%d users from %s", n, path)
			return users, nil
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	users, err := r.setupUsers(ctx, n, false, nil)
	if err != nil {
		return nil, err
	}
	if path := r.cfg.UsersFile; path != "" {
		if err := saveUsers(path, users); err != nil {
			return nil, err
		}
	}
	return users, nil
}

func loadUsers(path string) ([]*user, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer f.Close()
	var users []*user
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var su savedUser
		if err := json.Unmarshal(sc.Bytes(), &su); err != nil || su.Name == "" || su.ID <= 0 || su.Token == "" {
			return nil, fmt.Errorf("read users: %s:%d: not a user line (name, id, token): %v", path, line, err)
		}
		users = append(users, &user{name: su.Name, id: su.ID, token: su.Token})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read users %s: %w", path, err)
	}
	return users, nil
}

func saveUsers(path string, users []*user) error {
	var b []byte
	for _, u := range users {
		line, err := json.Marshal(savedUser{Name: u.name, ID: u.id, Token: u.token})
		if err != nil {
			return fmt.Errorf("save users: %w", err)
		}
		b = append(append(b, line...), '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save users: %w", err)
	}
	return nil
}
