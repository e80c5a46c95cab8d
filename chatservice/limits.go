package chatservice

import (
	"context"
	"fmt"
	"time"

	"clusterchat/model"
)

// rateLimit is the per-connection request limit: rate tokens per second,
// at most burst. A rate or burst <= 0 means no limit.
type rateLimit struct {
	rate, burst float64
}

func newRateLimit(rate, burst int) rateLimit {
	return rateLimit{rate: float64(rate), burst: float64(burst)}
}

func (l rateLimit) off() bool { return l.rate <= 0 || l.burst <= 0 }

// tokenBucket is one connection's state of a rateLimit, starting full. It
// is kept small (one per connection): the limit lives in the Service and
// the time is monotonic nanoseconds since an epoch of the caller's. Not
// safe for concurrent use (it lives on the connection's loop).
type tokenBucket struct {
	tokens float64
	last   int64 // ns since the caller's epoch
}

func newTokenBucket(l rateLimit, now int64) tokenBucket {
	return tokenBucket{tokens: l.burst, last: now}
}

// take consumes one token at now (ns since the epoch). When none is left
// it returns false and the milliseconds until one will be.
func (b *tokenBucket) take(l rateLimit, now int64) (ok bool, retryAfterMs int64) {
	if l.off() {
		return true, 0
	}
	if dt := float64(now-b.last) / 1e9; dt > 0 {
		b.tokens += dt * l.rate
		if b.tokens > l.burst {
			b.tokens = l.burst
		}
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := (1 - b.tokens) / l.rate * 1000
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
// window, in the store, so that every server of a cluster counts the same
// failures (PROTOCOL.md §3). Safe for concurrent use. A check and the
// failure it precedes are not atomic: attempts racing on several
// connections at once may each pass the check, so a burst can exceed max by
// the number of attempts in flight.
type loginThrottle struct {
	store  model.Store
	max    int
	window time.Duration
}

func newLoginThrottle(store model.Store, max int, window time.Duration) *loginThrottle {
	return &loginThrottle{store: store, max: max, window: window}
}

// check reports whether a password login of userID may be tried now; when
// not, the milliseconds until the oldest failure in the window is window
// old. An error means the store could not tell (the caller answers 503).
func (t *loginThrottle) check(ctx context.Context, userID int64, now time.Time) (ok bool, retryAfterMs int64, err error) {
	f, err := t.store.LoginFailures(ctx, userID, now.Add(-t.window))
	if err != nil {
		return false, 0, fmt.Errorf("login throttle: %w", err)
	}
	if len(f) < t.max {
		return true, 0, nil
	}
	wait := f[0].Add(t.window).Sub(now) // the oldest failure in the window

	ms := wait.Milliseconds()
	if time.Duration(ms)*time.Millisecond < wait {
		ms++
	}
	return false, max(ms, 1), nil
}

// fail records a failed password login of userID at now.
func (t *loginThrottle) fail(ctx context.Context, userID int64, now time.Time) error {
	if err := t.store.RecordLoginFailure(ctx, userID, now, t.window); err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}
