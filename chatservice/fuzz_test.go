package chatservice

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/bus"
	"clusterchat/bus/memory"
	"clusterchat/chatservice/protocol"
	"clusterchat/model/sqlite"
)

// recorder is a transport that keeps what the service sends.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	ctx    context.Context
}

func (r *recorder) ID() uint64                            { return 1 }
func (r *recorder) Context() context.Context              { return r.ctx }
func (r *recorder) RemoteAddr() net.Addr                  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (r *recorder) Shutdown(time.Duration)                {}
func (r *recorder) WaitUnsent(context.Context, int) error { return nil }
func (r *recorder) Send(f []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, append([]byte(nil), f...))
	return nil
}

func newTestService(t testing.TB) *Service {
	t.Helper()
	return newTestServiceWith(t, Config{Listen: "127.0.0.1:0", BcryptCost: 4, SoleServer: true})
}

// newTestServiceWith is newTestService with its own Config (on a fresh
// SQLite store and the memory bus).
func newTestServiceWith(t testing.TB, cfg Config) *Service {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "chat.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	svc, err := New(cfg, st, func(o bus.Options) (bus.Bus, error) { return memory.New(o), nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = svc.exec.Close(ctx)
		_ = svc.bus.Close()
	})
	return svc
}

// FuzzDispatch feeds one arbitrary frame to a logged-out connection. The
// server must not panic, must answer with valid JSON (one response for a
// request, one ERROR push for a bad frame), and must refuse every request
// that needs a login: nothing is written without authorization.
func FuzzDispatch(f *testing.F) {
	seeds := []string{
		`{"msgid":4}`, `{"msgid":4,"reqid":1}`, `{"msgid":5,"toid":2,"msg":"hi","cid":"c"}`,
		`{"msgid":1,"name":"ann","password":"secret123"}`, `{"msgid":1,"token":"x"}`,
		`{"msgid":2,"name":"ann","password":"short"}`, `{"msgid":13,"groupid":1,"msg":"x","cid":"y"}`,
		`{"msgid":19,"acks":[{"friendid":2,"seq":1}]}`, `{"msgid":18,"friendid":2,"limit":101}`,
		`{"msgid":9,"groupname":"g","groupdesc":null}`, `{"msgid":50}`, `[1]`, `{"msgid":1.5}`,
		`{"msgid":20,"name":"\ud800"}`, "{\"msgid\":4,\"x\":\"\xff\"}", `{"msgid":3}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	svc := newTestService(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := &recorder{ctx: ctx}
		sess := &session{conn: rec}
		req, ferr := parseFrame(frame)
		if ferr != nil {
			svc.badFrame(sess, ferr, false)
		} else {
			svc.handle(sess, req, false, 0)
		}
		if len(rec.frames) != 1 {
			t.Fatalf("%d frames sent for one input, want 1", len(rec.frames))
		}
		out := rec.frames[0]
		if !gjson.ValidBytes(out) {
			t.Fatalf("invalid JSON sent: %q", out)
		}
		msgid := int(gjson.GetBytes(out, "msgid").Int())
		errno := gjson.GetBytes(out, "errno").Int()
		if ferr != nil {
			if msgid != protocol.PushError || errno != protocol.ErrBadRequest {
				t.Fatalf("bad frame answered %s", out)
			}
			return
		}
		if msgid != req.msgid+protocol.Response {
			t.Fatalf("request %d answered with msgid %d", req.msgid, msgid)
		}
		switch req.msgid {
		case protocol.Login, protocol.Reg, protocol.Ping:
		default:
			if errno == 0 {
				t.Fatalf("request %s succeeded without login: %s", frame, out)
			}
		}
		if sess.loggedIn() && req.msgid != protocol.Login {
			t.Fatalf("session logged in by %s", frame)
		}
	})
}
