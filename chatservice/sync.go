package chatservice

import (
	"sync"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// maxHeld bounds the live pushes a session holds while its offline push
// runs; past it they are dropped (counted), and the client fills the gap
// with HISTORY as for any missed push.
const maxHeld = 10000

// pushGate keeps one session's pushes in seq order while its offline push
// runs (PROTOCOL.md §6: pushes of a conversation reach a session in
// ascending seq). While the gate is closed, live pushes are held; opening
// it sends them after the offline messages, leaving out those the offline
// push already sent.
type pushGate struct {
	mu     sync.Mutex
	closed bool
	held   *heldPushes // while closed, from the first push held
}

// heldPushes are the pushes a closed gate holds.
type heldPushes struct {
	frames  [][]byte
	dropped int
}

// deliver sends frame now, or holds a copy of it while the gate is closed
// (the caller may reuse frame when deliver returns, as with Send). It
// reports whether the frame was sent or held.
func (g *pushGate) deliver(conn transport, frame []byte) bool {
	g.mu.Lock()
	if !g.closed {
		err := conn.Send(frame) // under mu: a push sent before close() precedes the offline push
		g.mu.Unlock()
		return err == nil
	}
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = &heldPushes{}
	}
	if len(g.held.frames) >= maxHeld {
		g.held.dropped++
		return false
	}
	g.held.frames = append(g.held.frames, append([]byte(nil), frame...))
	return true
}

// close starts holding live pushes.
func (g *pushGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// open sends the held pushes, except messages at or below the seq that
// the offline push sent for their conversation, and stops holding. It
// returns how many held pushes were dropped for want of room.
func (g *pushGate) open(conn transport, sent map[model.Conv]int64) (dropped int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = false
	h := g.held
	if h == nil {
		return 0
	}
	g.held = nil
	for _, f := range h.frames {
		if conv, seq, ok := messageKey(f); ok && seq <= sent[conv] {
			continue
		}
		_ = conn.Send(f)
	}
	return h.dropped
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
