package chatservice

import (
	"context"
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"

	"clusterchat/model"
)

func TestPushGateHoldsLivePushesBehindOfflineOnes(t *testing.T) {
	rec := &recorder{ctx: context.Background()}
	var g pushGate
	if !g.deliver(rec, livePush(1)) || len(rec.frames) != 1 {
		t.Fatal("an open gate must send at once")
	}
	g.close()
	g.deliver(rec, livePush(4)) // already among the offline messages
	g.deliver(rec, livePush(5))
	g.deliver(rec, []byte(`{"msgid":205,"id":9,"online":true}`))
	if len(rec.frames) != 1 {
		t.Fatalf("a closed gate sent %d frames", len(rec.frames)-1)
	}
	if dropped := g.open(rec, map[model.Conv]int64{model.Direct(1, 2): 4}); dropped != 0 {
		t.Fatalf("dropped %d", dropped)
	}
	var got []int64
	for _, f := range rec.frames[1:] {
		got = append(got, gjson.GetBytes(f, "seq").Int())
	}
	if len(got) != 2 || got[0] != 5 || got[1] != 0 {
		t.Fatalf("after opening: seqs %v, want [5 0] (seq 4 was sent offline; then the presence push)", got)
	}
	g.deliver(rec, livePush(6))
	if len(rec.frames) != 4 {
		t.Fatal("a reopened gate must send at once")
	}
}

// A live push that comes after the offline push sent its message (it was
// pushed after its sender's response, late) is left out: no seq goes
// backwards. A newer one ends the filter of its conversation.
func TestPushGateLeavesOutLatePushes(t *testing.T) {
	rec := &recorder{ctx: context.Background()}
	var g pushGate
	g.close()
	g.open(rec, map[model.Conv]int64{model.Direct(1, 2): 4})
	g.deliver(rec, livePush(3))
	g.deliver(rec, livePush(4))
	if len(rec.frames) != 0 {
		t.Fatalf("%d late pushes of messages sent offline went out", len(rec.frames))
	}
	g.deliver(rec, livePush(5))
	g.deliver(rec, livePush(4)) // a retry's push (same cid) after the filter ended goes out as before
	if len(rec.frames) != 2 || gjson.GetBytes(rec.frames[0], "seq").Int() != 5 {
		t.Fatalf("frames after the offline push: %q", rec.frames)
	}
	if g.x != nil {
		t.Fatal("the gate still filters after its conversations moved on")
	}
}

// A conversation that goes quiet after the offline push does not keep the
// filter (and its slow path) for good: after lateWindow it ends.
func TestPushGateFilterEnds(t *testing.T) {
	rec := &recorder{ctx: context.Background()}
	var g pushGate
	g.close()
	g.open(rec, map[model.Conv]int64{model.Direct(1, 2): 4, model.Direct(1, 3): 7})
	g.deliver(rec, livePush(3))
	if len(rec.frames) != 0 || g.x == nil {
		t.Fatalf("within the window: %d frames sent, filter %v; want 0, kept", len(rec.frames), g.x != nil)
	}
	g.x.until = time.Now().Add(-time.Millisecond) // the window has passed
	g.deliver(rec, livePush(3))
	if len(rec.frames) != 1 || g.x != nil {
		t.Fatalf("after the window: %d frames sent, filter %v; want 1, gone", len(rec.frames), g.x != nil)
	}
}

func TestSharedDeadlineBounds(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	const timeout = 320 * time.Millisecond
	d := newSharedDeadline(parent, timeout)
	for range 50 {
		before := time.Now()
		ctx := d.get()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		if lo, hi := before.Add(timeout), time.Now().Add(timeout+timeout/32); dl.Before(lo) || dl.After(hi) {
			t.Fatalf("deadline %v outside [%v, %v]", dl, lo, hi)
		}
		time.Sleep(time.Millisecond)
	}
	ctx := d.get()
	cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("parent's cancellation not seen")
	}
}

// A server holds tens of thousands of idle sessions: keep the struct small
// (176 B before the token bucket, token hash and held pushes were slimmed).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 112 {
		t.Fatalf("session is %d bytes, want at most 112", n)
	}
}

// Concurrent callers of one sharedDeadline (no lock) each get a context
// ending no earlier than timeout after their call.
func TestSharedDeadlineConcurrent(t *testing.T) {
	const timeout = 64 * time.Millisecond // slack 2 ms: many replacements
	d := newSharedDeadline(context.Background(), timeout)
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			for range 2000 {
				before := time.Now()
				dl, ok := d.get().Deadline()
				if !ok || dl.Before(before.Add(timeout)) {
					errs <- fmt.Sprintf("deadline %v, called at %v", dl, before)
					return
				}
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}

// livePush is the CHAT push of testMessage with seq.
func livePush(seq int64) []byte {
	m := testMessage(false)
	m.Seq = seq
	return messageFrame(m, true)
}
