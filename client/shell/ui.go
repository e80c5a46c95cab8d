package shell

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"sync"

	"golang.org/x/term"
)

// ui is where the shell reads lines and prints output: a terminal line
// editor or plain lines.
type ui interface {
	// ReadLine returns the next input line (io.EOF at the end).
	ReadLine() (string, error)
	// ReadPassword reads a line without echo where possible.
	ReadPassword(prompt string) (string, error)
	// Print writes text that ends with a newline. On a terminal it appears
	// above the prompt and leaves the line being typed intact. Safe from
	// any goroutine.
	Print(s string)
	// SetPrompt changes the prompt (terminal only).
	SetPrompt(p string)
}

// termUI is the interactive terminal: golang.org/x/term's line editor with
// history, redrawing the prompt and the partial line after every Print.
type termUI struct {
	t *term.Terminal
}

func newTermUI(rw io.ReadWriter, prompt string) *termUI {
	t := term.NewTerminal(rw, prompt)
	t.History = &history{max: 500}
	return &termUI{t: t}
}

// history is the line editor's command history; it never keeps a line
// that carries a password (login:..., register:...).
type history struct {
	max     int
	entries []string // oldest first
}

func (h *history) Add(entry string) {
	l := strings.ToLower(strings.TrimSpace(entry))
	if strings.HasPrefix(l, "login:") || strings.HasPrefix(l, "register:") || l == "" {
		return
	}
	if n := len(h.entries); n > 0 && h.entries[n-1] == entry {
		return
	}
	h.entries = append(h.entries, entry)
	if len(h.entries) > h.max {
		h.entries = h.entries[len(h.entries)-h.max:]
	}
}

func (h *history) Len() int { return len(h.entries) }

func (h *history) At(i int) string { return h.entries[len(h.entries)-1-i] }

// SetSize tells the line editor the terminal's size.
func (u *termUI) SetSize(w, h int) { _ = u.t.SetSize(w, h) }

func (u *termUI) ReadLine() (string, error) {
	for {
		line, err := u.t.ReadLine()
		if errors.Is(err, term.ErrPasteIndicator) {
			err = nil
		}
		return line, err
	}
}

func (u *termUI) ReadPassword(prompt string) (string, error) { return u.t.ReadPassword(prompt) }
func (u *termUI) Print(s string)                             { _, _ = u.t.Write([]byte(s)) }
func (u *termUI) SetPrompt(p string)                         { u.t.SetPrompt(p) }

// plainUI reads one command per line and prints lines; nothing is
// redrawn.
type plainUI struct {
	sc *bufio.Scanner
	mu sync.Mutex
	w  *bufio.Writer
}

func newPlainUI(r io.Reader, w io.Writer) *plainUI {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	return &plainUI{sc: sc, w: bufio.NewWriter(w)}
}

func (u *plainUI) ReadLine() (string, error) {
	if !u.sc.Scan() {
		if err := u.sc.Err(); err != nil {
			return "", err
		}
		return "", io.EOF
	}
	return strings.TrimSuffix(u.sc.Text(), "\r"), nil
}

func (u *plainUI) ReadPassword(string) (string, error) { return u.ReadLine() }

func (u *plainUI) Print(s string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	_, _ = u.w.WriteString(s)
	_ = u.w.Flush()
}

func (u *plainUI) SetPrompt(string) {}
