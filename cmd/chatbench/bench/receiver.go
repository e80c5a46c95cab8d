package bench

import (
	"bytes"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// A chatbench cid is "S.I.T": sender index, message number, and the
// scheduled send time in nanoseconds since the run's epoch. The recipient
// computes the send→delivery latency from T alone, without shared state.

func appendCID(b []byte, sender int, i int64, sched time.Duration) []byte {
	b = strconv.AppendInt(b, int64(sender), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, i, 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(sched), 10)
}

// parseCIDStamp returns T of a chatbench cid.
func parseCIDStamp(cid []byte) (time.Duration, bool) {
	j := bytes.LastIndexByte(cid, '.')
	if j < 0 || bytes.IndexByte(cid, '.') == j {
		return 0, false
	}
	t, ok := parseUint(cid[j+1:])
	return time.Duration(t), ok
}

func parseUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var (
	keySeq = []byte(`"seq":`)
	keyCID = []byte(`"cid":"`)
)

// parseChatPush extracts seq and the cid's send stamp from a CHAT or
// GROUP_CHAT push. The server writes compact JSON with chatbench's own
// (quote-free) message text, so a byte scan finds the keys; anything else
// falls back to gjson.
func parseChatPush(raw []byte) (seq int64, stamp time.Duration, ok bool) {
	if i := bytes.Index(raw, keySeq); i >= 0 {
		rest := raw[i+len(keySeq):]
		e := 0
		for e < len(rest) && rest[e] >= '0' && rest[e] <= '9' {
			e++
		}
		if s, okSeq := parseUint(rest[:e]); okSeq && s > 0 {
			if k := bytes.Index(raw, keyCID); k >= 0 {
				c := raw[k+len(keyCID):]
				if q := bytes.IndexByte(c, '"'); q >= 0 {
					if t, okT := parseCIDStamp(c[:q]); okT {
						return s, t, true
					}
				}
			}
		}
	}
	res := gjson.GetManyBytes(raw, "seq", "cid")
	if res[0].Type != gjson.Number || res[0].Int() <= 0 {
		return 0, 0, false
	}
	t, okT := parseCIDStamp([]byte(res[1].String()))
	return res[0].Int(), t, okT
}

// receiver is the delivery state of one recipient connection, which is in
// exactly one benchmarked conversation. Its push handler runs on the
// connection's reader goroutine; mu guards against the final check.
type receiver struct {
	r   *run
	idx int // the connection's index (histogram shard key)

	mu     sync.Mutex
	got    bitset
	maxSeq int64
}

// onPush is the connection's client.PushHandler.
func (rx *receiver) onPush(p client.Push) {
	st := &rx.r.st
	if p.MsgID != protocol.PushChat && p.MsgID != protocol.PushGroupChat {
		st.otherPushes.Add(1)
		return
	}
	now := rx.r.now()
	seq, stamp, ok := parseChatPush(p.Raw)
	if !ok {
		st.badPushes.Add(1)
		return
	}
	rx.mu.Lock()
	dup := rx.got.set(seq)
	ooo := !dup && seq < rx.maxSeq
	if seq > rx.maxSeq {
		rx.maxSeq = seq
	}
	rx.mu.Unlock()
	st.delivered.Add(1)
	storeMax(&st.lastDelivery, int64(now))
	switch {
	case dup:
		st.duplicated.Add(1)
		return // latency of the first delivery only
	case ooo:
		st.outOfOrder.Add(1)
	}
	st.unique.Add(1)
	rx.r.delHist.record(rx.idx, now-stamp)
}
