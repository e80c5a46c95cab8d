// Package shell is the interactive ClusterChat shell behind cmd/chatclient:
// the start screen, the colon commands, rendering of messages and events,
// and a plain line mode for scripts. It runs on a client.Session, so it
// reconnects, fills gaps, shows each message once and ACKs what it showed.
package shell

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// Config configures Run.
type Config struct {
	// Addr is the server or balancer (host:port).
	Addr string
	// In and Out are the user's input and output.
	In  io.Reader
	Out io.Writer
	// Terminal selects the interactive line editor (In/Out must be a
	// terminal in raw mode, which the caller sets up); otherwise plain line
	// mode.
	Terminal bool
	// Color turns on ANSI colours (terminal mode only).
	Color bool
	// Logger receives diagnostics (default: discard).
	Logger *slog.Logger
	// Now is the clock for timestamps (default time.Now).
	Now func() time.Time
	// SendTimeout bounds how long an unacknowledged message is retried
	// (default 2 minutes).
	SendTimeout time.Duration
	// Session, when set, adjusts the options of every session (tests).
	Session func(*client.SessionOptions)
	// Size, when set, returns the terminal's width and height; it is asked
	// at start and whenever Resize delivers (SIGWINCH).
	Size   func() (width, height int, err error)
	Resize <-chan struct{}
}

// PlainFormat documents the plain line mode; chatclient --help prints it.
const PlainFormat = `Plain line mode (stdin is not a terminal): one command per line, the same
commands as on a terminal. Before login: login:ID-OR-NAME:PASSWORD,
register:NAME:PASSWORD (then logs in), quit. Every output line starts with a
keyword; strings are Go-quoted ("..." with \n, \x1b, \u202e escapes), times
are RFC 3339 UTC with milliseconds, conversations are friend:ID or group:ID.

  OK <command> [key=value ...]          the command succeeded
  ERR <command> errno=N text="..."      it failed (errno 0: not sent / local)
  LOGIN id=N name="..."                 logged in; FRIEND/GROUP/REQUEST lines follow
  FRIEND id=N name="..." online=BOOL unread=N
  GROUP id=N name="..." desc="..." role=owner|member unread=N
  REQUEST id=N name="..."               a pending friend request to you
  MEMBER id=N name="..." role=R online=BOOL
  USER id=N name="..." online=BOOL      (findusers)
  FOUNDGROUP id=N name="..." desc="..." members=N
  HISTORY conv=C seq=N from=N name="..." time=T text="..."
  MSG conv=C seq=N from=N name="..." own=BOOL time=T text="..."
  FRIEND_REQUEST id=N name="..."
  FRIEND_ADDED id=N name="..." online=BOOL
  FRIEND_REMOVED id=N
  PRESENCE id=N online=BOOL
  GROUP_EVENT group=N event=join|quit|owner|deleted id=N name="..."
  PROFILE id=N name="..."
  GOAWAY reason="..."
  SERVER_ERROR errno=N text="..."
  DISCONNECTED err="..."                the connection was lost; reconnecting
  CONNECTED id=N name="..." reconnected=BOOL
  WARN text="..."
  CLOSED err="..."                      the session ended (back to the start screen)
  HELP text="..."
  BYE
Each MSG is printed once, in seq order per conversation, and is ACKed after
it is printed.`

// Run runs the shell until quit, end of input or ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 2 * time.Minute
	}
	sh := &shell{cfg: cfg, pal: newPalette(cfg.Color && cfg.Terminal), plain: !cfg.Terminal}
	if cfg.Terminal {
		tu := newTermUI(struct {
			io.Reader
			io.Writer
		}{cfg.In, cfg.Out}, "> ")
		tu.t.AutoCompleteCallback = sh.complete
		sh.ui = tu
		if cfg.Size != nil {
			if w, h, err := cfg.Size(); err == nil {
				tu.SetSize(w, h)
			}
			if cfg.Resize != nil {
				rctx, cancel := context.WithCancel(ctx)
				defer cancel()
				go func() {
					for {
						select {
						case <-rctx.Done():
							return
						case <-cfg.Resize:
							if w, h, err := cfg.Size(); err == nil {
								tu.SetSize(w, h)
							}
						}
					}
				}()
			}
		}
	} else {
		sh.ui = newPlainUI(cfg.In, cfg.Out)
	}
	return sh.run(ctx)
}

type shell struct {
	cfg   Config
	ui    ui
	pal   palette
	plain bool

	mu       sync.Mutex
	sess     *client.Session
	me       protocol.User
	friends  map[int64]*protocol.Friend
	groups   map[int64]*protocol.Group
	requests map[int64]protocol.User
	closed   chan struct{} // closed when the current session ends
}

// printf prints one line (a newline is added).
func (sh *shell) printf(format string, args ...any) {
	sh.ui.Print(fmt.Sprintf(format, args...) + "\n")
}

// info prints a human line in terminal mode only.
func (sh *shell) info(format string, args ...any) {
	if !sh.plain {
		sh.printf(format, args...)
	}
}

func (sh *shell) run(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		sess, lr, err := sh.startScreen(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, errQuit) {
				sh.bye()
				return nil
			}
			return err
		}
		err = sh.loggedIn(ctx, sess, lr)
		if errors.Is(err, errQuit) || errors.Is(err, io.EOF) {
			sh.bye()
			return nil
		}
		if err != nil && !errors.Is(err, errLoggedOut) {
			return err
		}
	}
}

func (sh *shell) bye() {
	if sh.plain {
		sh.printf("BYE")
	} else {
		sh.printf("bye")
	}
}

var (
	errQuit      = errors.New("quit")
	errLoggedOut = errors.New("logged out")
)

// startScreen offers login, register and quit until a login succeeds.
func (sh *shell) startScreen(ctx context.Context) (*client.Session, client.LoginResult, error) {
	sh.ui.SetPrompt("> ")
	if !sh.plain {
		p := sh.pal
		sh.printf("%s== ClusterChat ==%s  server %s", p.bold, p.reset, sh.cfg.Addr)
		sh.printf("  1) login   2) register   3) quit      (or login:ID-OR-NAME:PASSWORD, register:NAME:PASSWORD)")
	}
	for {
		line, err := sh.ui.ReadLine()
		if err != nil {
			return nil, client.LoginResult{}, err
		}
		line = strings.TrimSpace(line)
		var cmd Command
		switch strings.ToLower(line) {
		case "":
			continue
		case "1", "login":
			if cmd, err = sh.askCredentials("login", "id or name: "); err != nil {
				return nil, client.LoginResult{}, err
			}
		case "2", "register":
			if cmd, err = sh.askCredentials("register", "name: "); err != nil {
				return nil, client.LoginResult{}, err
			}
		case "3", "quit", "exit":
			return nil, client.LoginResult{}, errQuit
		default:
			cmd, err = Parse(line)
			if err != nil {
				sh.fail("parse", err)
				continue
			}
		}
		switch cmd.Name {
		case "help":
			sh.help(false)
			continue
		case "quit":
			return nil, client.LoginResult{}, errQuit
		case "login", "register":
		default:
			sh.fail(cmd.Name, errors.New("log in first (login, register or quit)"))
			continue
		}
		if cmd.Name == "register" {
			u, err := sh.register(ctx, cmd.Text, cmd.Desc)
			if err != nil {
				sh.fail("register", err)
				continue
			}
			if sh.plain {
				sh.printf("OK register id=%d name=%s", u.ID, quote(u.Name))
			} else {
				sh.printf("registered: your id is %d, name %s", u.ID, sh.name(u.Name))
			}
			cmd = Command{Name: "login", ID: u.ID, Desc: cmd.Desc}
		}
		sess, lr, err := sh.login(ctx, cmd)
		if err != nil {
			sh.fail("login", err)
			continue
		}
		return sess, lr, nil
	}
}

func (sh *shell) askCredentials(what, first string) (Command, error) {
	sh.ui.SetPrompt(first)
	who, err := sh.ui.ReadLine()
	sh.ui.SetPrompt("> ")
	if err != nil {
		return Command{}, err
	}
	pass, err := sh.ui.ReadPassword("password: ")
	if err != nil {
		return Command{}, err
	}
	who = strings.TrimSpace(who)
	cmd := Command{Name: what, Text: who, Desc: pass}
	if what == "login" && isDigits(who) {
		_, _ = fmt.Sscan(who, &cmd.ID)
	}
	return cmd, nil
}

func (sh *shell) register(ctx context.Context, name, pass string) (protocol.User, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	c, err := client.Dial(rctx, sh.cfg.Addr, client.WithLogger(sh.cfg.Logger))
	if err != nil {
		return protocol.User{}, err
	}
	defer c.Close()
	return c.Register(rctx, name, pass)
}

func (sh *shell) login(ctx context.Context, cmd Command) (*client.Session, client.LoginResult, error) {
	opts := client.SessionOptions{
		Addr:     sh.cfg.Addr,
		Password: cmd.Desc,
		Logger:   sh.cfg.Logger,
		OnEvent:  sh.onEvent,
	}
	if cmd.ID != 0 {
		opts.ID = cmd.ID
	} else {
		opts.Name = cmd.Text
	}
	if sh.cfg.Session != nil {
		sh.cfg.Session(&opts)
	}
	sess := client.NewSession(opts)
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	lr, err := sess.Login(rctx)
	if err != nil {
		sess.Close()
		return nil, lr, err
	}
	return sess, lr, nil
}

// loggedIn shows the welcome screen and runs commands until logout or quit.
func (sh *shell) loggedIn(ctx context.Context, sess *client.Session, lr client.LoginResult) error {
	closed := make(chan struct{})
	sh.mu.Lock()
	sh.sess = sess
	sh.closed = closed
	sh.me = lr.User
	sh.setLists(lr.Friends, lr.Groups, lr.Requests)
	sh.mu.Unlock()

	sh.welcome()
	runCtx, cancelRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		defer close(closed)
		_ = sess.Run(runCtx)
	}()
	sq := newSender(sh, sess)
	defer func() {
		sq.stop()
		sess.Close()
		cancelRun()
		<-runDone
		sh.mu.Lock()
		sh.sess = nil
		sh.mu.Unlock()
	}()
	sh.ui.SetPrompt(sh.prompt())
	for {
		line, err := sh.ui.ReadLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				sq.drain()
			}
			return err
		}
		select {
		case <-closed:
			sh.info("the session has ended; log in again")
			if !errors.Is(err, io.EOF) && strings.TrimSpace(line) != "" {
				sh.fail("session", errors.New("session closed"))
			}
			return errLoggedOut
		default:
		}
		cmd, err := Parse(line)
		if errors.Is(err, ErrEmpty) {
			continue
		}
		if err != nil {
			sh.fail("parse", err)
			continue
		}
		if err := sh.exec(ctx, sess, sq, cmd); err != nil {
			if errors.Is(err, errQuit) {
				sq.drain()
			}
			return err
		}
	}
}

func (sh *shell) prompt() string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.pal
	return fmt.Sprintf("%s%s%s> ", p.cyan, Sanitize(sh.me.Name), p.reset)
}

func (sh *shell) setLists(friends []protocol.Friend, groups []protocol.Group, reqs []protocol.User) {
	sh.friends = make(map[int64]*protocol.Friend, len(friends))
	for i := range friends {
		f := friends[i]
		sh.friends[f.ID] = &f
	}
	sh.groups = make(map[int64]*protocol.Group, len(groups))
	for i := range groups {
		g := groups[i]
		sh.groups[g.ID] = &g
	}
	sh.requests = make(map[int64]protocol.User, len(reqs))
	for _, r := range reqs {
		sh.requests[r.ID] = r
	}
}

// name renders a received name for people.
func (sh *shell) name(s string) string { return sh.pal.bold + Sanitize(s) + sh.pal.reset }

func sortedKeys[V any](m map[int64]V) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// welcome prints the current user, friends, groups and requests.
func (sh *shell) welcome() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	var b strings.Builder
	p := sh.pal
	if sh.plain {
		fmt.Fprintf(&b, "LOGIN id=%d name=%s\n", sh.me.ID, quote(sh.me.Name))
		sh.writeListsPlain(&b)
		b.WriteString("OK login\n")
		sh.ui.Print(b.String())
		return
	}
	rule := strings.Repeat("=", 60)
	line := strings.Repeat("-", 60)
	fmt.Fprintf(&b, "%s\nCurrent user: id %d, %s\n%s\n", rule, sh.me.ID, sh.name(sh.me.Name), line)
	sh.writeListsHuman(&b, line)
	fmt.Fprintf(&b, "%s\nType %shelp%s for the commands.\n", rule, p.bold, p.reset)
	sh.ui.Print(b.String())
}

func (sh *shell) writeListsPlain(b *strings.Builder) {
	for _, id := range sortedKeys(sh.friends) {
		f := sh.friends[id]
		fmt.Fprintf(b, "FRIEND id=%d name=%s online=%t unread=%d\n", f.ID, quote(f.Name), f.Online, f.Unread)
	}
	for _, id := range sortedKeys(sh.groups) {
		g := sh.groups[id]
		fmt.Fprintf(b, "GROUP id=%d name=%s desc=%s role=%s unread=%d\n", g.ID, quote(g.Name), quote(g.Desc), g.Role, g.Unread)
	}
	for _, id := range sortedKeys(sh.requests) {
		fmt.Fprintf(b, "REQUEST id=%d name=%s\n", id, quote(sh.requests[id].Name))
	}
}

func (sh *shell) writeListsHuman(b *strings.Builder, line string) {
	p := sh.pal
	b.WriteString("Friends:\n")
	if len(sh.friends) == 0 {
		b.WriteString("  (none yet: findusers:PREFIX, then addfriend:ID)\n")
	}
	for _, id := range sortedKeys(sh.friends) {
		f := sh.friends[id]
		state := p.dim + "offline" + p.reset
		if f.Online {
			state = p.green + "online" + p.reset
		}
		unread := ""
		if f.Unread > 0 {
			unread = fmt.Sprintf("  %s%d unread%s", p.yellow, f.Unread, p.reset)
		}
		fmt.Fprintf(b, "  %-6d %s  %s%s\n", f.ID, sh.name(f.Name), state, unread)
	}
	fmt.Fprintf(b, "%s\nGroups:\n", line)
	if len(sh.groups) == 0 {
		b.WriteString("  (none yet: findgroups, joingroup:ID or creategroup:NAME:DESC)\n")
	}
	for _, id := range sortedKeys(sh.groups) {
		g := sh.groups[id]
		unread := ""
		if g.Unread > 0 {
			unread = fmt.Sprintf("  %s%d unread%s", p.yellow, g.Unread, p.reset)
		}
		role := ""
		if g.Role == "owner" {
			role = " (owner)"
		}
		fmt.Fprintf(b, "  %-6d %s%s  %s%s\n", g.ID, sh.name(g.Name), role, Sanitize(g.Desc), unread)
	}
	if len(sh.requests) > 0 {
		fmt.Fprintf(b, "%s\nFriend requests (accept:ID or delfriend:ID):\n", line)
		for _, id := range sortedKeys(sh.requests) {
			fmt.Fprintf(b, "  %-6d %s\n", id, sh.name(sh.requests[id].Name))
		}
	}
}

func (sh *shell) help(loggedIn bool) {
	txt := helpText(loggedIn)
	if sh.plain {
		for _, l := range strings.Split(strings.TrimRight(txt, "\n"), "\n") {
			sh.printf("HELP text=%s", quote(strings.TrimSpace(l)))
		}
		sh.printf("OK help")
		return
	}
	sh.ui.Print("Commands:\n" + txt + "Tab completes commands and ids; up/down browse the history.\n")
}

// errWords describes an error for people: the errno in words and the
// server's reason.
func errWords(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) {
		if ce.Msg != "" {
			// The server's reason is already in words; the errno's text is
			// added only when it says something more.
			s := Sanitize(ce.Msg)
			if t := protocol.ErrnoText(ce.Errno); !strings.Contains(strings.ToLower(ce.Msg), t) && ce.Errno != protocol.ErrNotFound {
				s = t + ": " + s
			}
			if ce.Errno == protocol.ErrRateLimited && ce.RetryAfter > 0 {
				s += fmt.Sprintf(" (try again in %.1f s)", float64(ce.RetryAfter)/1000)
			}
			return s
		}
		return protocol.ErrnoText(ce.Errno)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return "cannot reach the server: " + Sanitize(op.Err.Error())
	}
	switch {
	case errors.Is(err, client.ErrSessionClosed):
		return "the session has ended"
	case errors.Is(err, client.ErrClosed):
		return "connection lost (reconnecting)"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time (not connected?)"
	case errors.Is(err, client.ErrFrameTooLarge):
		return "too large to send"
	}
	return Sanitize(err.Error())
}

// fail reports a failed command.
func (sh *shell) fail(what string, err error) {
	if sh.plain {
		sh.printf("ERR %s errno=%d text=%s", what, client.Errno(err), quote(errWords(err)))
		return
	}
	sh.printf("%s✗ %s: %s%s", sh.pal.red, what, errWords(err), sh.pal.reset)
}

// ok reports a successful command: plain gets "OK what kv", terminal the
// human text.
func (sh *shell) ok(what, kv, human string) {
	if sh.plain {
		if kv != "" {
			kv = " " + kv
		}
		sh.printf("OK %s%s", what, kv)
		return
	}
	if human != "" {
		sh.printf("%s", human)
	}
}
