package chatservice

import (
	"context"
	"time"
)

const busTimeout = 2 * time.Second

// push sends frame to every session of each user in users, except skip
// (the requesting connection, which learns the outcome from its response):
// first to the sessions on this server, then over the bus to the other
// servers. The bus is a doorbell: a failed publish is logged, and the
// recipients find the message again through the offline push or HISTORY.
func (s *Service) push(users []int64, frame []byte, skip *session) {
	n := s.reg.sendAll(users, frame, skip)
	s.metrics.pushes.Add(float64(n))
	if len(users) == 0 {
		return
	}
	if err := s.bus.Publish(s.busDeadline.get(), users, frame); err != nil {
		s.metrics.busErrors.Inc()
		s.log.Warn("bus publish failed", "users", len(users), "err", err)
	}
}

// online reports presence for users (any server).
func (s *Service) online(ctx context.Context, users []int64) []bool {
	if len(users) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, busTimeout)
	defer cancel()
	on, err := s.bus.Online(ctx, users)
	if err != nil || len(on) != len(users) {
		// Without the bus, this server still knows its own sessions.
		s.metrics.busErrors.Inc()
		on = make([]bool, len(users))
		for i, u := range users {
			on[i] = s.reg.online(u)
		}
	}
	return on
}

func itoa(n int) string {
	switch n {
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 409:
		return "409"
	case 413:
		return "413"
	case 429:
		return "429"
	case 503:
		return "503"
	}
	return "other"
}
