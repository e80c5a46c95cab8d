package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"clusterchat/client/servertest"
)

// plainClient is a chatclient process in plain line mode, driven through
// pipes.
type plainClient struct {
	t     *testing.T
	stdin io.WriteCloser
	mu    sync.Mutex
	lines []string
	next  int // first line not yet consumed by expect
	cmd   *exec.Cmd
	done  chan struct{}
}

func startPlain(t *testing.T, bin, addr string) *plainClient {
	t.Helper()
	cmd := exec.Command(bin, "--addr", addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pc := &plainClient{t: t, stdin: stdin, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			pc.mu.Lock()
			pc.lines = append(pc.lines, sc.Text())
			pc.mu.Unlock()
		}
		cmd.Wait()
		close(pc.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-pc.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-pc.done
		}
		if t.Failed() {
			pc.mu.Lock()
			t.Logf("plain client output:\n%s", strings.Join(pc.lines, "\n"))
			pc.mu.Unlock()
		}
	})
	return pc
}

func (pc *plainClient) send(line string) {
	pc.t.Helper()
	if _, err := io.WriteString(pc.stdin, line+"\n"); err != nil {
		pc.t.Fatalf("write %q: %v", line, err)
	}
}

// expect waits for the next line matching re (skipping others) and returns
// its submatches.
func (pc *plainClient) expect(re string) []string {
	pc.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		pc.mu.Lock()
		for i := pc.next; i < len(pc.lines); i++ {
			if m := rx.FindStringSubmatch(pc.lines[i]); m != nil {
				pc.next = i + 1
				pc.mu.Unlock()
				return m
			}
		}
		pc.mu.Unlock()
		if time.Now().After(deadline) {
			pc.t.Fatalf("plain client: no line matching %q", re)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tmuxClient is a chatclient in a private tmux server's pane: a real
// terminal.
type tmuxClient struct {
	t      *testing.T
	socket string
}

func startTmux(t *testing.T, bin, addr string, env ...string) *tmuxClient {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is needed for this test (make deps installs it): %v", err)
	}
	var b [6]byte
	rand.Read(b[:])
	tc := &tmuxClient{t: t, socket: "chatclient-e2e-" + hex.EncodeToString(b[:])}
	errLog := t.TempDir() + "/stderr.log"
	shellCmd := fmt.Sprintf("%s --addr %s 2>>%s; echo EXITED $?; sleep 30", bin, addr, errLog)
	args := []string{"new-session", "-d", "-x", "120", "-y", "40", "-s", "main", "env", "-u", "NO_COLOR", "TERM=xterm-256color"}
	args = append(append(args, env...), "sh", "-c", shellCmd)
	tc.tmux(args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tmux screen:\n%s", tc.screen())
			if b, err := os.ReadFile(errLog); err == nil {
				t.Logf("tmux client stderr:\n%s", b)
			}
		}
		exec.Command("tmux", "-L", tc.socket, "kill-server").Run()
	})
	return tc
}

func (tc *tmuxClient) tmux(args ...string) string {
	tc.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tc.socket}, args...)...).CombinedOutput()
	if err != nil {
		tc.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// typeText types text literally, without Enter.
func (tc *tmuxClient) typeText(s string) { tc.tmux("send-keys", "-t", "main", "-l", s) }

// line types text and Enter.
func (tc *tmuxClient) line(s string) {
	tc.typeText(s)
	tc.tmux("send-keys", "-t", "main", "Enter")
}

// screenEscapes captures the screen with colour and attribute escapes.
func (tc *tmuxClient) screenEscapes() string {
	return tc.tmux("capture-pane", "-p", "-e", "-t", "main")
}

func (tc *tmuxClient) screen() string {
	out, err := exec.Command("tmux", "-L", tc.socket, "capture-pane", "-p", "-t", "main").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("capture-pane: %v %s", err, out)
	}
	return string(out)
}

// waitScreen waits until the screen matches re and returns the submatches.
func (tc *tmuxClient) waitScreen(re string) []string {
	tc.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := rx.FindStringSubmatch(tc.screen()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			tc.t.Fatalf("screen never matched %q:\n%s", re, tc.screen())
		}
		time.Sleep(30 * time.Millisecond)
	}
}

// lastLine returns the last non-empty screen line (the prompt line).
func (tc *tmuxClient) lastLine() string {
	lines := strings.Split(strings.TrimRight(tc.screen(), "\n "), "\n")
	return strings.TrimRight(lines[len(lines)-1], " ")
}

func buildBinaries(t *testing.T) (server, client string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	server, err := servertest.ServerBinary(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	client, err = servertest.Build(ctx, dir, "clusterchat/cmd/chatclient")
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// TestE2ETwoClients runs a plain-mode chatclient and a terminal chatclient
// (under tmux) against a real chatserver: register, befriend, chat both
// ways, and a message arriving while text is typed leaves the typed text
// intact.
func TestE2ETwoClients(t *testing.T) {
	serverBin, clientBin := buildBinaries(t)
	srv := servertest.Start(t, serverBin, t.TempDir())

	// Alice: plain mode.
	a := startPlain(t, clientBin, srv.Addr)
	a.send("register:alice:password1")
	aliceID := a.expect(`^OK register id=(\d+) name="alice"$`)[1]
	a.expect(`^LOGIN id=` + aliceID + ` name="alice"$`)
	a.expect(`^OK login$`)

	// Bob: a real terminal. Register through the start menu.
	b := startTmux(t, clientBin, srv.Addr)
	b.waitScreen(`1\) login\s+2\) register\s+3\) quit`)
	b.line("2")
	b.waitScreen(`name: $|name:\s*\n`)
	b.line("bob")
	b.waitScreen(`password:`)
	b.line("password1")
	bobID := b.waitScreen(`registered: your id is (\d+)`)[1]
	b.waitScreen(`Current user: id ` + bobID + `, bob`)
	b.waitScreen("Type help for the commands")

	// Befriend: alice asks, bob accepts.
	a.send("addfriend:" + bobID)
	a.expect(`^OK addfriend status=requested$`)
	b.waitScreen(`alice\(` + aliceID + `\) wants to be your friend`)
	b.line("accept:" + aliceID)
	b.waitScreen(`you and ` + aliceID + ` are now friends`)
	a.expect(`^FRIEND_ADDED id=` + bobID + ` name="bob" online=true$`)

	// Chat both ways.
	a.send("chat:" + bobID + ":hello bob")
	a.expect(`^MSG conv=friend:` + bobID + ` seq=1 from=` + aliceID + ` name="alice" own=true time=\S+ text="hello bob"$`)
	a.expect(`^OK chat seq=1$`)
	b.waitScreen(`alice\(` + aliceID + `\): hello bob`)
	b.line("chat:" + aliceID + ":hi alice")
	b.waitScreen(`you → alice\(` + aliceID + `\): hi alice`)
	a.expect(`^MSG conv=friend:` + bobID + ` seq=2 from=` + bobID + ` name="bob" own=false time=\S+ text="hi alice"$`)

	// A message arrives while bob is typing: the typed text stays on the
	// prompt line, the message appears above it.
	typed := "chat:" + aliceID + ":half-typed words"
	b.typeText(typed)
	b.waitScreen(regexp.QuoteMeta(typed) + `\s*$`)
	a.send("chat:" + bobID + ":interrupting you")
	a.expect(`^OK chat seq=3$`)
	b.waitScreen(`alice\(` + aliceID + `\): interrupting you\s*\n.*` + regexp.QuoteMeta(typed))
	if last := b.lastLine(); !strings.HasSuffix(last, typed) {
		t.Fatalf("prompt line after the incoming message = %q, want it to end with %q", last, typed)
	}
	b.tmux("send-keys", "-t", "main", "Enter")
	a.expect(`^MSG conv=friend:` + bobID + ` seq=4 from=` + bobID + ` .* text="half-typed words"$`)

	// Escape sequences and control characters received are shown escaped.
	a.send("chat:" + bobID + ":evil \x1b[2J\x1b]0;pwned\x07 \u202eend")
	a.expect(`^OK chat seq=5$`)
	b.waitScreen(regexp.QuoteMeta(`evil \x1b[2J\x1b]0;pwned\a \u202eend`))
	if s := b.screen(); !strings.Contains(s, "interrupting you") {
		t.Fatalf("the screen was cleared by a received escape sequence:\n%s", s)
	}

	// Errors in words, not numbers.
	a.send("chat:999999:nobody")
	a.expect(`^ERR chat errno=40[34] text="`)
	b.line("joingroup:424242")
	b.waitScreen(`✗ joingroup: no such (user or )?group`)

	// Colours on the terminal; none at all in plain mode.
	if !strings.Contains(b.screenEscapes(), "\x1b[") {
		t.Error("no colours on the terminal")
	}
	a.mu.Lock()
	for _, l := range a.lines {
		if strings.ContainsAny(l, "\x1b\a\r") {
			t.Errorf("plain output line with a control character: %q", l)
		}
	}
	a.mu.Unlock()

	// Tab completion of commands and of known ids.
	b.typeText("groupc")
	b.tmux("send-keys", "-t", "main", "Tab")
	b.waitScreen(`bob> groupchat:\s*$`)
	b.tmux("send-keys", "-t", "main", "C-u")
	b.typeText("chat:")
	b.tmux("send-keys", "-t", "main", "Tab")
	b.waitScreen(`bob> chat:` + aliceID + `:\s*$`)
	b.tmux("send-keys", "-t", "main", "C-u")

	// Groups: bob creates, alice joins, both talk, history on both sides.
	b.line("creategroup:gophers:all about Go")
	gid := b.waitScreen(`✓ group gophers created with id (\d+)`)[1]
	a.send("joingroup:" + gid)
	a.expect(`^OK joingroup id=` + gid + ` name="gophers"$`)
	b.waitScreen(`#gophers\(` + gid + `\): alice\(` + aliceID + `\) joined`)
	a.send("groupchat:" + gid + ":hello gophers")
	a.expect(`^OK groupchat seq=1$`)
	b.waitScreen(`#gophers\(` + gid + `\) alice\(` + aliceID + `\): hello gophers`)
	b.line("groupchat:" + gid + ":welcome")
	a.expect(`^MSG conv=group:` + gid + ` seq=2 from=` + bobID + ` name="bob" own=false .* text="welcome"$`)
	a.send("list:" + gid)
	a.expect(`^MEMBER id=` + bobID + ` name="bob" role=owner online=true$`)
	a.expect(`^OK list count=2$`)
	a.send("ghistory:" + gid + ":5")
	a.expect(`^HISTORY conv=group:` + gid + ` seq=1 from=` + aliceID + ` .*text="hello gophers"$`)
	a.expect(`^OK ghistory count=2$`)
	b.line("history:" + aliceID + ":2")
	b.waitScreen(`history of alice\(` + aliceID + `\) \(2 messages\)`)
	a.send("findusers:bo")
	a.expect(`^USER id=` + bobID + ` name="bob" online=true$`)
	a.send("help")
	a.expect(`^HELP text="chat:friendid:message`)
	a.expect(`^OK help$`)

	// Both quit cleanly.
	b.line("quit")
	b.waitScreen(`EXITED 0`)
	a.send("quit")
	a.expect(`^BYE$`)
	select {
	case <-a.done:
		if code := a.cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("plain client exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plain client did not exit after quit")
	}
}

// TestE2EPlainReconnect restarts the server under a plain client: it
// reconnects with its token and receives what was sent meanwhile, once.
func TestE2EPlainReconnect(t *testing.T) {
	serverBin, clientBin := buildBinaries(t)
	dir := t.TempDir()
	srv := servertest.Start(t, serverBin, dir)
	a := startPlain(t, clientBin, srv.Addr)
	a.send("register:carol:password1")
	carolID := a.expect(`^OK register id=(\d+)`)[1]
	a.expect(`^OK login$`)
	b := startPlain(t, clientBin, srv.Addr)
	b.send("register:dave:password1")
	daveID := b.expect(`^OK register id=(\d+)`)[1]
	b.expect(`^OK login$`)
	a.send("addfriend:" + daveID)
	a.expect(`^OK addfriend`)
	b.send("accept:" + carolID)
	b.expect(`^OK accept`)
	a.send("chat:" + daveID + ":one")
	a.expect(`^OK chat seq=1$`)
	b.expect(`^MSG conv=friend:` + carolID + ` seq=1 .*text="one"$`)

	// Restart the server in place (same address, same database).
	if err := srv.Stop(); err != nil {
		t.Logf("server exit: %v", err)
	}
	a.expect(`^DISCONNECTED `)
	b.expect(`^DISCONNECTED `)
	// Typed while the server is down: retried until it is back.
	a.send("chat:" + daveID + ":two")
	servertest.StartAt(t, serverBin, dir, srv.Addr)
	a.expect(`^CONNECTED id=` + carolID + ` name="carol" reconnected=true$`)
	a.expect(`^OK chat seq=2$`)
	b.expect(`^CONNECTED id=` + daveID + ` name="dave" reconnected=true$`)
	b.expect(`^MSG conv=friend:` + carolID + ` seq=2 .*text="two"$`)
	b.send("history:" + carolID)
	b.expect(`^OK history count=2$`)
	b.mu.Lock()
	var msgs []string
	for _, l := range b.lines {
		if strings.HasPrefix(l, "MSG ") {
			msgs = append(msgs, l)
		}
	}
	b.mu.Unlock()
	if len(msgs) != 2 {
		t.Fatalf("dave saw %d MSG lines, want 2 (each once):\n%s", len(msgs), strings.Join(msgs, "\n"))
	}
}

// TestE2ENoColor: NO_COLOR turns colours off on a terminal.
func TestE2ENoColor(t *testing.T) {
	_, clientBin := buildBinaries(t)
	b := startTmux(t, clientBin, "127.0.0.1:1", "NO_COLOR=1")
	b.waitScreen(`1\) login\s+2\) register`)
	if s := b.screenEscapes(); strings.Contains(s, "\x1b[1m") || strings.Contains(s, "\x1b[3") {
		t.Fatalf("colours with NO_COLOR:\n%q", s)
	}
	b.line("login:nobody:password1")
	b.waitScreen(`✗ login: cannot reach the server: .*connection refused`)
	b.line("3")
	b.waitScreen(`EXITED 0`)
}
