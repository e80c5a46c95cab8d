package chatservice

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
// failures (PROTOCOL.md §3). Safe for concurrent use.
//
// An attempt that passes the check counts as a failure until it is over
// (loginAttempt): a check sees the stored failures plus the attempts of
// this server still hashing, so that a burst of attempts in parallel cannot
// all pass a check that none of them has failed yet. An attempt that would
// make them reach max is refused at once, as if those in flight had failed:
// it does not wait for their outcome, only for another check of the same
// account to finish its store read. Two servers do not see each other's
// attempts in flight: in a cluster a burst can exceed max by at most the
// attempts in flight on the other servers.
type loginThrottle struct {
	store  model.Store
	max    int
	window time.Duration

	mu       sync.Mutex
	accounts map[int64]*accountAttempts // accounts with a check or an attempt in flight here
}

// accountAttempts is one account's attempts in flight on this server.
type accountAttempts struct {
	check    chan struct{} // holds a token while a check of the account runs (one store read)
	inFlight atomic.Int32  // attempts past the check and not over
	refs     int           // checks and attempts holding the entry; guarded by loginThrottle.mu
}

func newLoginThrottle(store model.Store, max int, window time.Duration) *loginThrottle {
	return &loginThrottle{store: store, max: max, window: window, accounts: make(map[int64]*accountAttempts)}
}

// loginAttempt is a password login that passed the throttle. It counts
// against the account until fail or release. One goroutine uses it.
type loginAttempt struct {
	t      *loginThrottle
	userID int64
	at     time.Time
	acc    *accountAttempts
	over   bool
}

// begin checks whether a password login of userID may be tried at now. It
// returns the attempt when it may. When not, it returns the milliseconds
// until the oldest failure in the window is window old, counting the
// attempts in flight as failures of now. An error means the store could
// not tell (the caller answers 503).
func (t *loginThrottle) begin(ctx context.Context, userID int64, now time.Time) (a *loginAttempt, retryAfterMs int64, err error) {
	start := time.Now()
	acc := t.hold(userID)
	defer func() {
		if a == nil {
			t.drop(userID, acc)
		}
	}()
	select {
	case acc.check <- struct{}{}:
	default:
		select { // another check of the account runs: one store read
		case acc.check <- struct{}{}:
			now = now.Add(time.Since(start))
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("login throttle: waiting for another check: %w", ctx.Err())
		}
	}
	defer func() { <-acc.check }()
	// The attempts in flight are read before the stored failures: an
	// attempt records its failure before it stops counting, so one that
	// ends in between is counted twice (a refusal a moment early), never
	// missed.
	inFlight := int(acc.inFlight.Load())
	f, err := t.store.LoginFailures(ctx, userID, now.Add(-t.window))
	if err != nil {
		return nil, 0, fmt.Errorf("login throttle: %w", err)
	}
	switch k := len(f) + inFlight - t.max; {
	case len(f) >= t.max:
		return nil, retryAfter(f[0].Add(t.window).Sub(now)), nil // the oldest failure in the window
	case k >= 0 && k < len(f):
		// Should those in flight fail, an attempt may start again once the
		// stored failure k has left the window.
		return nil, retryAfter(f[k].Add(t.window).Sub(now)), nil
	case k >= 0:
		return nil, retryAfter(t.window), nil // the attempts in flight, should they fail
	}
	acc.inFlight.Add(1)
	return &loginAttempt{t: t, userID: userID, at: now, acc: acc}, 0, nil // keeps the entry
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// retryAfter is wait in whole milliseconds, rounded up, at least 1.
func retryAfter(wait time.Duration) int64 {
	ms := wait.Milliseconds()
	if time.Duration(ms)*time.Millisecond < wait {
		ms++
	}
	return max(ms, 1)
}

// fail records the attempt as a failed login at now (or at its check, if
// later), then ends it. ctx bounds the store call: the caller's own, taken
// after the hash, which may have waited long for a slot of the bcrypt
// pool; the failure counts from when it was known, not from the check.
func (a *loginAttempt) fail(ctx context.Context, now time.Time) error {
	if a.over {
		return fmt.Errorf("login throttle: fail called for user %d after the attempt was over", a.userID)
	}
	defer a.release()
	if err := a.t.store.RecordLoginFailure(ctx, a.userID, later(a.at, now), a.t.window); err != nil {
		return fmt.Errorf("login throttle: %w", err)
	}
	return nil
}

// release ends the attempt without a failure (the password was right, or
// the attempt could not be decided). Idempotent.
func (a *loginAttempt) release() {
	if a.over {
		return
	}
	a.over = true
	a.acc.inFlight.Add(-1)
	a.t.drop(a.userID, a.acc)
}

// hold returns userID's entry, counting the caller as its holder.
func (t *loginThrottle) hold(userID int64) *accountAttempts {
	t.mu.Lock()
	defer t.mu.Unlock()
	acc := t.accounts[userID]
	if acc == nil {
		acc = &accountAttempts{check: make(chan struct{}, 1)}
		t.accounts[userID] = acc
	}
	acc.refs++
	return acc
}

// drop undoes one hold; the last holder removes the entry.
func (t *loginThrottle) drop(userID int64, acc *accountAttempts) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if acc.refs--; acc.refs == 0 {
		delete(t.accounts, userID)
	}
}
