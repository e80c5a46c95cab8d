package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"clusterchat/client"
)

// loginToken connects u and logs it in with its token.
func (r *run) loginToken(ctx context.Context, u *user) (*client.Conn, error) {
	c, err := r.dial(ctx, u)
	if err != nil {
		return nil, err
	}
	rctx, cancel := r.reqCtx(ctx)
	defer cancel()
	if _, err := c.LoginToken(rctx, u.token); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s with token on %s: %w", u.name, u.addr, err)
	}
	return c, nil
}

func sumRSS(s []procSample) int64 {
	var n int64
	for _, p := range s {
		n += p.rssKiB
	}
	return n
}

// conns holds cfg.Conns logged-in idle connections for cfg.Duration, each
// PINGing every cfg.PingEvery (spread evenly), and measures the servers'
// RSS before and after. The users are registered and logged in with a
// password first on short-lived connections; the measured connections log
// in with the tokens, so the RSS difference is the cost of the connections
// and sessions, not of bcrypt.
func (r *run) conns(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	n := cfg.Conns
	setupStart := r.now()
	users, err := r.tokenUsers(ctx, n)
	if err != nil {
		return err
	}
	defer closeAll(users)
	rep.Users = n
	rep.DurationS = cfg.Duration.Seconds()
	rep.SetupS = roundTo((r.now() - setupStart).Seconds(), 2)
	if cfg.SetupOnly {
		return nil
	}
	r.setPhase("settle", nil)
	sleepCtx(ctx, cfg.Settle)
	before := r.sampleServers()

	var connected atomic.Int64
	loginHist := newShardedHist()
	r.setPhase("connect", func() string { return fmt.Sprintf("conns %d/%d", connected.Load(), n) })
	connStart := r.now()
	if err := parallel(ctx, n, cfg.SetupConc, func(ctx context.Context, i int) error {
		u := users[i]
		t0 := r.now()
		c, err := r.loginToken(ctx, u)
		if err != nil {
			return err
		}
		loginHist.record(i, r.now()-t0)
		u.conn = c
		connected.Add(1)
		return nil
	}); err != nil {
		return fmt.Errorf("connect %d conns (%d made): %w", n, connected.Load(), err)
	}
	connectS := (r.now() - connStart).Seconds()
	connectedSample := r.sampleServers()

	// Hold: one PING per connection every PingEvery, spread evenly.
	pingHist := newShardedHist()
	var pings, pingErrs atomic.Int64
	r.setPhase("hold", func() string {
		return fmt.Sprintf("conns %d pings %d ping-errors %d", n, pings.Load(), pingErrs.Load())
	})
	holdStart := r.now()
	end := holdStart + cfg.Duration
	waitProfiles := r.profileServers(ctx, cfg.PprofDelay, cfg.Duration)
	interval := float64(cfg.PingEvery) / float64(n)
	sem := make(chan struct{}, 1024)
	var wg sync.WaitGroup
	for i := 0; ctx.Err() == nil; i++ {
		sched := holdStart + time.Duration(float64(i)*interval)
		if sched >= end {
			break
		}
		if d := sched - r.now(); d > 0 && !sleepCtx(ctx, d) {
			break
		}
		u := users[i%n]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rctx, cancel := r.reqCtx(ctx)
			defer cancel()
			t0 := r.now()
			if _, err := u.conn.Ping(rctx); err != nil {
				pingErrs.Add(1)
				r.st.addErr(err)
				return
			}
			pingHist.record(u.idx, r.now()-t0)
			pings.Add(1)
		}()
	}
	if d := end - r.now(); d > 0 {
		sleepCtx(ctx, d)
	}
	wg.Wait()
	after := r.sampleServers()
	rep.Servers = r.serverReport(before, after, r.now()-connStart)
	rep.Profiles = waitProfiles()

	var dropped int64
	for _, u := range users {
		select {
		case <-u.conn.Done():
			dropped++
		default:
		}
	}
	cr := &ConnsReport{
		Conns:           n,
		Open:            int64(n) - dropped,
		Dropped:         dropped,
		ConnectS:        roundTo(connectS, 2),
		Login:           summarize(loginHist.merged()),
		Ping:            summarize(pingHist.merged()),
		Pings:           pings.Load(),
		PingErrors:      pingErrs.Load(),
		RSSBeforeKiB:    sumRSS(before),
		RSSConnectedKiB: sumRSS(connectedSample),
		RSSEndKiB:       sumRSS(after),
	}
	if len(cfg.PIDs) > 0 {
		cr.RSSPerConnB = roundTo(float64(cr.RSSEndKiB)*1024/float64(n), 0)
		cr.RSSDeltaPerConnB = roundTo(float64(cr.RSSEndKiB-cr.RSSBeforeKiB)*1024/float64(n), 0)
	}
	rep.Errors = r.st.errMap()
	rep.Conns = cr
	if dropped > 0 {
		return fmt.Errorf("%w: conns: %d of %d connections were closed while idle", ErrCheckFailed, dropped, n)
	}
	return nil
}

// storm logs cfg.Storm users in (password), disconnects them all, waits
// cfg.Settle, then reconnects all at once and logs in with the tokens. A
// failed attempt is retried after 50–100 ms; clients not logged in after
// cfg.Duration count as failed.
func (r *run) storm(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	n := cfg.Storm
	setupStart := r.now()
	users, err := r.tokenUsers(ctx, n)
	if err != nil {
		return err
	}
	defer closeAll(users)
	rep.Users = n
	rep.SetupS = roundTo((r.now() - setupStart).Seconds(), 2)
	if cfg.SetupOnly {
		return nil
	}
	r.setPhase("settle", nil)
	sleepCtx(ctx, cfg.Settle)
	before := r.sampleServers()

	sctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		ok, failed, retries atomic.Int64
		lastOK              atomic.Int64
		release             time.Duration
		wg                  sync.WaitGroup
	)
	fromRelease := newShardedHist() // release → logged in (what a user waits)
	attempt := newShardedHist()     // the successful attempt's connect + LOGIN
	ready := make(chan struct{})
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			for {
				t0 := r.now()
				c, err := r.loginToken(sctx, u)
				if err == nil {
					now := r.now()
					attempt.record(u.idx, now-t0)
					fromRelease.record(u.idx, now-release)
					storeMax(&lastOK, int64(now))
					u.conn = c
					ok.Add(1)
					return
				}
				r.st.addErr(err)
				if sctx.Err() != nil {
					failed.Add(1)
					return
				}
				retries.Add(1)
				if !sleepCtx(sctx, 50*time.Millisecond+rand.N(50*time.Millisecond)) {
					failed.Add(1)
					return
				}
			}
		}()
	}
	r.setPhase("storm", func() string {
		return fmt.Sprintf("logged in %d/%d retries %d", ok.Load(), n, retries.Load())
	})
	waitProfiles := r.profileServers(ctx, 0, cfg.Duration) // the storm starts now
	release = r.now()
	close(ready)
	wg.Wait()
	done := r.now()
	after := r.sampleServers()
	rep.Servers = r.serverReport(before, after, done-release)
	rep.Profiles = waitProfiles()
	sr := &StormReport{
		Clients:  n,
		OK:       ok.Load(),
		Failed:   failed.Load(),
		Retries:  retries.Load(),
		Login:    summarize(fromRelease.merged()),
		Attempt:  summarize(attempt.merged()),
		Deadline: cfg.Duration.String(),
	}
	if sr.OK > 0 {
		sr.TotalMS = roundTo(float64(time.Duration(lastOK.Load())-release)/float64(time.Millisecond), 1)
	}
	rep.Errors = r.st.errMap()
	rep.Storm = sr
	if sr.Failed > 0 {
		return fmt.Errorf("%w: storm: %d of %d clients not logged in within %v", ErrCheckFailed, sr.Failed, n, cfg.Duration)
	}
	return nil
}
