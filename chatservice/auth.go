package chatservice

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/crypto/bcrypt"

	"clusterchat/chatservice/protocol"
	"clusterchat/model"
)

// tokenTTL is how long a login token stays valid.
const tokenTTL = 30 * 24 * time.Hour

// errHashBusy: too many logins are waiting for password hashing.
var errHashBusy = errors.New("chatservice: password hashing is saturated")

// hasher runs bcrypt on a bounded pool: at most workers hashes at once and
// at most queue callers waiting, so that a burst of password logins can
// neither take every CPU nor hold every executor worker.
type hasher struct {
	cost  int
	slots chan struct{} // running
	wait  chan struct{} // running + waiting
}

func newHasher(cost, workers, queue int) *hasher {
	return &hasher{cost: cost, slots: make(chan struct{}, workers), wait: make(chan struct{}, workers+queue)}
}

func (h *hasher) run(ctx context.Context, fn func()) error {
	select {
	case h.wait <- struct{}{}:
	default:
		return errHashBusy
	}
	defer func() { <-h.wait }()
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.slots }()
	fn()
	return nil
}

func (h *hasher) hash(ctx context.Context, password string) (hash []byte, err error) {
	if e := h.run(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), h.cost) }); e != nil {
		return nil, e
	}
	return hash, err
}

func (h *hasher) check(ctx context.Context, hash []byte, password string) (ok bool, err error) {
	if e := h.run(ctx, func() { ok = bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil }); e != nil {
		return false, e
	}
	return ok, nil
}

func (s *Service) hashErr(err error) *apiError {
	s.log.Warn("password hashing unavailable", "err", err)
	return errf(protocol.ErrUnavailable, "server busy, retry")
}

// tokenHash is what the store and the session keep of a token.
func tokenHash(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}

func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("chatservice: token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (s *Service) handleReg(c *call) *apiError {
	name := c.req.userName("name")
	password := c.req.str("password")
	if c.req.err == nil && !validPassword(password) {
		c.req.fail(protocol.ErrBadRequest, "password must be 8-72 bytes")
	}
	if c.req.err != nil {
		return c.req.err
	}
	hash, err := s.hasher.hash(c.ctx, password)
	if err != nil {
		return s.hashErr(err)
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	u, err := s.store.CreateUser(ctx, name, hash)
	if err != nil {
		return s.storeErr(err, "user")
	}
	s.log.Info("user registered", "user", u.ID)
	c.resp.Raw("user", userJSON(u.ID, u.Name))
	return nil
}

// handleLogin implements LOGIN: exactly one of {id,password},
// {name,password}, {token}. Checks in the order of PROTOCOL.md §3: shape,
// the account's throttle, credentials, already logged in.
func (s *Service) handleLogin(c *call) *apiError {
	r := c.req
	hasID, hasName, hasPass, hasToken := r.has("id"), r.has("name"), r.has("password"), r.has("token")
	var id int64
	var name, password, token string
	switch {
	case hasToken && !hasID && !hasName && !hasPass:
		token = r.credential("token")
	case hasID && !hasName && hasPass && !hasToken:
		id = r.id("id")
		password = r.credential("password")
	case hasName && !hasID && hasPass && !hasToken:
		name = r.credential("name")
		password = r.credential("password")
	default:
		return errf(protocol.ErrBadRequest, "login needs exactly one of {id, password}, {name, password} or {token}")
	}
	if r.err != nil {
		return r.err
	}
	ctx, cancel := s.storeCtx()
	defer cancel()

	var user model.User
	var th [32]byte // the token's hash, computed once
	if token != "" {
		th = tokenHash(token)
		uid, err := s.store.TokenUser(ctx, th[:], time.Now())
		if errors.Is(err, model.ErrNotFound) {
			return errBadCreds
		} else if err != nil {
			return s.storeErr(err, "token")
		}
		if user, err = s.store.UserByID(ctx, uid); errors.Is(err, model.ErrNotFound) {
			return errBadCreds
		} else if err != nil {
			return s.storeErr(err, "user")
		}
	} else {
		var err error
		if id != 0 {
			user, err = s.store.UserByID(ctx, id)
		} else if validName(name, protocol.MaxUserName) {
			user, err = s.store.UserByName(ctx, name)
		} else {
			err = model.ErrNotFound
		}
		if errors.Is(err, model.ErrNotFound) {
			return errBadCreds
		} else if err != nil {
			return s.storeErr(err, "user")
		}
		now := time.Now()
		attempt, retry, err := s.throttle.begin(ctx, user.ID, now)
		if err != nil {
			return s.storeErr(err, "login throttle") // fail closed
		} else if attempt == nil {
			return &apiError{errno: protocol.ErrRateLimited, msg: "too many failed logins, wait", retryAfter: retry}
		}
		defer attempt.release() // when the hash fails; fail and a right password end it sooner
		good := false
		if validPassword(password) && password != badCredential {
			if good, err = s.hasher.check(c.ctx, user.PassHash, password); err != nil {
				return s.hashErr(err)
			}
		}
		// The hash may have waited long for a slot of the bcrypt pool (a
		// burst of logins): the store calls that follow, the failure's
		// record included, get their own deadline, not what is left of the
		// one taken before it.
		ctx, cancel = s.storeCtx()
		defer cancel()
		if !good {
			if err := attempt.fail(ctx, time.Now()); err != nil {
				return s.storeErr(err, "login throttle") // an uncounted failure is not answered as one
			}
			s.log.Info("failed login", "user", user.ID, "remote", c.sess.conn.RemoteAddr().String())
			return errBadCreds
		}
		attempt.release() // a right password: no failure to count
	}
	if c.sess.loggedIn() {
		return errf(protocol.ErrConflict, "this connection is already logged in")
	}
	if token == "" {
		var err error
		if token, err = newToken(); err != nil {
			return errf(protocol.ErrUnavailable, "cannot issue a token, retry")
		}
		th = tokenHash(token)
		if err := s.store.CreateToken(ctx, user.ID, th[:], time.Now().Add(tokenTTL)); err != nil {
			return s.storeErr(err, "token")
		}
	}

	// Register first, then read the lists and the offline messages: a
	// message stored in between is pushed live, and perhaps also offline
	// (clients dedupe by seq); none is missed.
	// Presence before this session counts: on another server (bus) or here.
	wasOnline := s.online(ctx, []int64{user.ID})[0]
	c.sess.gate.close() // live pushes wait for the offline push (opened there)
	first := s.reg.add(user.ID, user.Name, c.sess)
	if err := s.bus.Subscribe(ctx, user.ID); err != nil {
		s.metrics.busErrors.Inc()
		s.log.Warn("bus subscribe failed", "user", user.ID, "err", err)
	}
	c.sess.tokenHash = th
	c.sess.userID.Store(user.ID)
	if c.sess.conn.Context().Err() != nil { // closed while logging in
		s.endSession(c.sess)
		c.sess.gate.open(c.sess.conn, nil)
		return errf(protocol.ErrUnavailable, "connection closed")
	}
	lists, aerr := s.lists(ctx, user.ID)
	if aerr != nil {
		s.endSession(c.sess)
		c.sess.gate.open(c.sess.conn, nil)
		return aerr
	}
	if s.log.Enabled(ctx, slog.LevelInfo) {
		s.log.Info("login", "user", user.ID, "conn", c.sess.conn.ID(), "remote", c.sess.conn.RemoteAddr().String())
	}
	c.resp.Str("token", token).Raw("user", userJSON(user.ID, user.Name))
	lists.write(c.resp)
	uid := user.ID
	c.after = func() {
		if first && !wasOnline {
			s.pushPresence(uid, lists.friendIDs, true)
		}
		s.pushOffline(c.sess, uid, lists.offline, true)
	}
	return nil
}

// endSession logs a session out (LOGOUT or close): unregisters it, drops
// its bus subscription and tells friends when it was the user's last.
// Safe to call twice.
func (s *Service) endSession(sess *session) {
	uid := sess.userID.Swap(0)
	if uid == 0 {
		return
	}
	last := s.reg.remove(uid, sess)
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	if err := s.bus.Unsubscribe(ctx, uid); err != nil {
		s.log.Warn("bus unsubscribe failed", "user", uid, "err", err)
	}
	if !last || s.online(ctx, []int64{uid})[0] {
		return
	}
	sctx, scancel := s.storeCtx()
	defer scancel()
	friends, err := s.store.Friends(sctx, uid)
	if err != nil {
		s.log.Warn("presence: cannot list friends", "user", uid, "err", err)
		return
	}
	ids := make([]int64, len(friends))
	for i, f := range friends {
		ids[i] = f.User.ID
	}
	s.pushPresence(uid, ids, false)
}

func (s *Service) pushPresence(uid int64, friends []int64, online bool) {
	if len(friends) == 0 {
		return
	}
	frame := newFrame(205).Int("id", uid).Bool("online", online).Bytes()
	s.push(friends, frame, nil)
}

func (s *Service) handleLogout(c *call) *apiError {
	if !c.sess.loggedIn() {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	if err := s.store.DeleteToken(ctx, c.sess.tokenHash[:]); err != nil {
		return s.storeErr(err, "token")
	}
	s.log.Info("logout", "user", c.sess.userID.Load(), "conn", c.sess.conn.ID())
	c.sess.tokenHash = [32]byte{}
	s.endSession(c.sess)
	return nil
}

func (s *Service) handlePing(c *call) *apiError {
	c.resp.Int("time", time.Now().UnixMilli())
	return nil
}

func (s *Service) handleSetName(c *call) *apiError {
	name := c.req.userName("name")
	if c.req.err != nil {
		return c.req.err
	}
	uid := c.sess.userID.Load()
	if uid == 0 {
		return errNotLoggedIn
	}
	ctx, cancel := s.storeCtx()
	defer cancel()
	cur, err := s.store.UserByID(ctx, uid)
	if err != nil {
		return s.storeErr(err, "user")
	}
	if cur.Name == name {
		c.resp.Raw("user", userJSON(uid, name))
		return nil
	}
	u, err := s.store.SetUserName(ctx, uid, name)
	if err != nil {
		return s.storeErr(err, "user")
	}
	s.reg.setName(uid, u.Name)
	c.resp.Raw("user", userJSON(uid, u.Name))
	friends, err := s.store.Friends(ctx, uid)
	if err != nil {
		s.log.Warn("profile: cannot list friends", "user", uid, "err", err)
	}
	targets := []int64{uid}
	for _, f := range friends {
		targets = append(targets, f.User.ID)
	}
	frame := newFrame(207).Raw("user", userJSON(uid, u.Name)).Bytes()
	c.after = func() { s.push(targets, frame, c.sess) }
	return nil
}
