package netcore

import "time"

// wheel is a lazy timing wheel for idle connections. Each connection sits in
// exactly one slot: the tick at which it would expire if no bytes arrived.
// Inbound traffic only records the current tick in the connection
// (c.lastActive); when a slot comes due, connections that were active since
// are moved to their new slot instead of being closed. Cost per tick is the
// number of connections in the due slot. Used only on its loop.
type wheel struct {
	tick         time.Duration
	timeoutTicks int64
	start        time.Time
	cur          int64
	slots        [][]*Conn
}

func newWheel(timeout time.Duration, now time.Time) *wheel {
	tick := max(timeout/8, time.Millisecond)
	// +1 because cur lags real time by up to one tick.
	ticks := int64((timeout+tick-1)/tick) + 1
	return &wheel{
		tick:         tick,
		timeoutTicks: ticks,
		start:        now,
		slots:        make([][]*Conn, ticks+2),
	}
}

func (w *wheel) add(c *Conn) {
	c.lastActive = w.cur
	w.insert(c, w.cur+w.timeoutTicks)
}

func (w *wheel) insert(c *Conn, at int64) {
	i := at % int64(len(w.slots))
	w.slots[i] = append(w.slots[i], c)
}

// advance moves the wheel to now, calling expire for each connection idle
// for the timeout. Closed connections are dropped.
func (w *wheel) advance(now time.Time, expire func(*Conn)) {
	target := int64(now.Sub(w.start) / w.tick)
	if target-w.cur > int64(len(w.slots)) {
		w.cur = target - int64(len(w.slots))
	}
	for w.cur < target {
		w.cur++
		i := w.cur % int64(len(w.slots))
		due := w.slots[i]
		w.slots[i] = nil
		var keep []*Conn
		for _, c := range due {
			if c.state == stateClosed {
				continue
			}
			if deadline := c.lastActive + w.timeoutTicks; deadline > w.cur {
				if deadline%int64(len(w.slots)) == i {
					keep = append(keep, c)
				} else {
					w.insert(c, deadline)
				}
				continue
			}
			expire(c)
			if c.state != stateClosed {
				// Expired but still open (draining): look again later.
				w.insert(c, w.cur+w.timeoutTicks)
			}
		}
		clear(due)
		if keep != nil {
			w.slots[i] = append(w.slots[i], keep...)
		} else if w.slots[i] == nil {
			w.slots[i] = due[:0]
		}
	}
}
