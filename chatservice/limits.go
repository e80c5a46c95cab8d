package chatservice

import (
	"sync"
	"time"
)

// tokenBucket limits the request rate of one connection: rate tokens per
// second, at most burst, starting full. A zero rate means no limit. Not
// safe for concurrent use (it lives on the connection's loop).
type tokenBucket struct {
	rate, burst float64
	tokens      float64
	last        time.Time
}

func newTokenBucket(rate, burst int, now time.Time) tokenBucket {
	return tokenBucket{rate: float64(rate), burst: float64(burst), tokens: float64(burst), last: now}
}

// take consumes one token. When none is left it returns false and the
// milliseconds until one will be.
func (b *tokenBucket) take(now time.Time) (ok bool, retryAfterMs int64) {
	if b.rate <= 0 || b.burst <= 0 {
		return true, 0
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens += dt * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / b.rate * 1000
	ms := int64(wait)
	if float64(ms) < wait {
		ms++
	}
	return false, ms
}

// badFrameWindow counts bad frames over a sliding window. Not safe for
// concurrent use (it lives on the connection's loop).
type badFrameWindow struct {
	times []time.Time
}

// add records a bad frame at now and reports whether more than max bad
// frames fell within window.
func (w *badFrameWindow) add(now time.Time, max int, window time.Duration) (exceeded bool) {
	cut := now.Add(-window)
	i := 0
	for i < len(w.times) && !w.times[i].After(cut) {
		i++
	}
	w.times = append(w.times[i:], now)
	return len(w.times) > max
}

// loginThrottle counts failed password logins per account over a sliding
// window. Safe for concurrent use.
type loginThrottle struct {
	mu       sync.Mutex
	max      int
	window   time.Duration
	failures map[int64][]time.Time
}

func newLoginThrottle(max int, window time.Duration) *loginThrottle {
	return &loginThrottle{max: max, window: window, failures: make(map[int64][]time.Time)}
}

// check reports whether a password login of userID may be tried now; when
// not, the milliseconds until the oldest failure in the window expires.
func (t *loginThrottle) check(userID int64, now time.Time) (ok bool, retryAfterMs int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.prune(userID, now)
	if len(f) < t.max {
		return true, 0
	}
	wait := f[0].Add(t.window).Sub(now)
	ms := wait.Milliseconds()
	if time.Duration(ms)*time.Millisecond < wait {
		ms++
	}
	return false, ms
}

// fail records a failed password login.
func (t *loginThrottle) fail(userID int64, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failures[userID] = append(t.prune(userID, now), now)
}

func (t *loginThrottle) prune(userID int64, now time.Time) []time.Time {
	f := t.failures[userID]
	cut := now.Add(-t.window)
	i := 0
	for i < len(f) && !f[i].After(cut) {
		i++
	}
	f = f[i:]
	if len(f) == 0 {
		delete(t.failures, userID)
		return nil
	}
	t.failures[userID] = f
	return f
}
