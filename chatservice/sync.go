package chatservice

import (
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// lateWindow is how long an opened gate goes on leaving out live pushes
// of messages the offline push sent.
const lateWindow = 10 * time.Second

// maxHeld bounds the live pushes a session holds while its offline push
// runs; past it they are dropped (counted), and the client fills the gap
// with HISTORY as for any missed push.
const maxHeld = 10000

// pushGate keeps one session's pushes in seq order while its offline push
// runs (PROTOCOL.md §6: pushes of a conversation reach a session in
// ascending seq). While the gate is closed, live pushes are held; opening
// it sends them after the offline messages, leaving out those the offline
// push already sent. A live push can also come later than that: a message
// is pushed after its sender's response, so the push of a message stored
// before the login may reach the new session after the offline push sent
// it. So an opened gate goes on leaving out, per conversation, messages at
// or below the seq the offline push sent, until the conversation's first
// newer push, or until lateWindow has passed: a push that late is no
// longer one the offline push raced with, and a conversation that goes
// quiet must not keep the session off the fast path for good.
type pushGate struct {
	mu     sync.Mutex
	closed bool
	x      *gateState // while closed or filtering; nil on the fast path
}

// gateState is the rarely needed part of a pushGate.
type gateState struct {
	held    [][]byte // while closed
	dropped int
	sent    map[model.Conv]int64 // after opening: the offline push's last seq per conversation
	until   time.Time            // after opening: when the filter ends (lateWindow)
}

// deliver sends frame now, or holds a copy of it while the gate is closed
// (the caller may reuse frame when deliver returns, as with Send). It
// reports whether the frame was sent or held (or left out as already sent).
func (g *pushGate) deliver(conn transport, frame []byte) bool {
	g.mu.Lock()
	if g.x == nil && !g.closed {
		err := conn.Send(frame) // under mu: a push sent before close() precedes the offline push
		g.mu.Unlock()
		return err == nil
	}
	defer g.mu.Unlock()
	if g.x == nil {
		g.x = &gateState{}
	}
	if g.closed {
		if len(g.x.held) >= maxHeld {
			g.x.dropped++
			return false
		}
		g.x.held = append(g.x.held, append([]byte(nil), frame...))
		return true
	}
	if time.Now().After(g.x.until) {
		g.x = nil // the late pushes have all come
	} else if conv, seq, ok := messageKey(frame); ok {
		if last, filtered := g.x.sent[conv]; filtered {
			if seq <= last {
				return true // the offline push sent it
			}
			delete(g.x.sent, conv)
			if len(g.x.sent) == 0 {
				g.x = nil
			}
		}
	}
	return conn.Send(frame) == nil
}

// close starts holding live pushes.
func (g *pushGate) close() {
	g.mu.Lock()
	g.closed = true
	if g.x != nil {
		g.x.sent = nil
	}
	g.mu.Unlock()
}

// open sends the held pushes, except messages at or below the seq that
// the offline push sent for their conversation, and stops holding; later
// pushes of those messages are left out too. It returns how many held
// pushes were dropped for want of room. The gate keeps sent.
func (g *pushGate) open(conn transport, sent map[model.Conv]int64) (dropped int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = false
	x := g.x
	g.x = nil
	if len(sent) > 0 {
		g.x = &gateState{sent: sent, until: time.Now().Add(lateWindow)}
	}
	if x == nil {
		return 0
	}
	for _, f := range x.held {
		if conv, seq, ok := messageKey(f); ok && seq <= sent[conv] {
			continue
		}
		_ = conn.Send(f)
	}
	return x.dropped
}

// messageKey returns the conversation and seq of a CHAT or GROUP_CHAT push.
func messageKey(frame []byte) (model.Conv, int64, bool) {
	r := gjson.GetManyBytes(frame, "msgid", "seq", "groupid", "from", "toid")
	switch int(r[0].Int()) {
	case protocol.PushChat:
		return model.Direct(r[3].Int(), r[4].Int()), r[1].Int(), true
	case protocol.PushGroupChat:
		return model.GroupConv(r[2].Int()), r[1].Int(), true
	}
	return model.Conv{}, 0, false
}
