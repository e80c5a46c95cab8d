package shell

import (
	"context"
	"fmt"
	"sync"
	"time"

	"clusterchat/client"
)

// sender sends chat messages one after another, in the order they were
// typed, each retried by the session with its cid until acknowledged. In
// plain mode send waits for the outcome so that scripts see OK/ERR in
// order.
type sender struct {
	sh     *shell
	sess   *client.Session
	q      chan sendJob
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type sendJob struct {
	cmd  Command
	done chan struct{}
}

func newSender(sh *shell, sess *client.Session) *sender {
	ctx, cancel := context.WithCancel(context.Background())
	s := &sender{sh: sh, sess: sess, q: make(chan sendJob, 256), ctx: ctx, cancel: cancel}
	s.wg.Add(1)
	go s.loop()
	return s
}

func (s *sender) send(cmd Command) {
	job := sendJob{cmd: cmd, done: make(chan struct{})}
	select {
	case s.q <- job:
	default:
		s.sh.fail(cmd.Name, fmt.Errorf("too many messages waiting to be sent"))
		return
	}
	if s.sh.plain {
		<-job.done
		return
	}
	if s.sess.Conn() == nil {
		s.sh.info("%s(not connected: it will be sent when the connection is back)%s", s.sh.pal.dim, s.sh.pal.reset)
	}
}

func (s *sender) loop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case job, ok := <-s.q:
			if !ok {
				return
			}
			s.do(job)
		}
	}
}

func (s *sender) do(job sendJob) {
	defer close(job.done)
	ctx, cancel := context.WithTimeout(s.ctx, s.sh.cfg.SendTimeout)
	defer cancel()
	var m client.Message
	var err error
	if job.cmd.Name == "groupchat" {
		m, err = s.sess.GroupChat(ctx, job.cmd.ID, job.cmd.Text)
	} else {
		m, err = s.sess.SendChat(ctx, job.cmd.ID, job.cmd.Text)
	}
	if err != nil {
		what := fmt.Sprintf("%s to %d", job.cmd.Name, job.cmd.ID)
		if s.sh.plain {
			what = job.cmd.Name
		}
		s.sh.fail(what, err)
		return
	}
	// terminal mode shows the message itself when the session delivers it
	s.sh.ok(job.cmd.Name, fmt.Sprintf("seq=%d", m.Seq), "")
}

// drainTimeout bounds how long quit waits for queued messages.
const drainTimeout = 10 * time.Second

// drain waits for queued messages to be sent (end of input, quit), at
// most drainTimeout; then what is left is abandoned and reported.
func (s *sender) drain() {
	s.once.Do(func() { close(s.q) })
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		s.cancel()
		<-done
	}
}

// stop abandons queued messages.
func (s *sender) stop() {
	s.cancel()
	s.wg.Wait()
}
