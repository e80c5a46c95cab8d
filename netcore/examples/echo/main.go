// Command echo is a netcore echo server: every length-field frame (4-byte
// big-endian length, max 65536 bytes) is sent back unchanged; a bad length
// closes the connection. Other programs use it as a test target:
//
//	go run ./netcore/examples/echo -listen 127.0.0.1:PORT
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"clusterchat/netcore"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:7000", "listen address host:port")
	loops := flag.Int("loops", 0, "event loops (0: number of CPUs)")
	maxFrame := flag.Int("max-frame", 65536, "largest frame body in bytes")
	idle := flag.Duration("idle", 0, "idle timeout (0: off)")
	highWater := flag.Int("high-water", 64<<20, "unsent output per connection before it is closed (0: off)")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := netcore.NewServer(netcore.Options{
		Addr:        *listen,
		Loops:       *loops,
		MaxFrame:    *maxFrame,
		IdleTimeout: *idle,
		HighWater:   *highWater,
		Logger:      log,
		OnMessage: func(c *netcore.Conn, frame []byte) {
			if err := c.Send(frame); err != nil {
				c.ForceClose(netcore.ReasonForced)
			}
		},
		OnFrameError: func(c *netcore.Conn, err error) {
			log.Info("bad frame, closing", "conn", c.ID(), "remote", c.RemoteAddr(), "err", err)
		},
	})
	if err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	log.Info("echo server listening", "addr", srv.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	st := srv.Stats()
	log.Info("stopped", "accepted", st.Accepted, "frames_in", st.FramesIn, "frames_out", st.FramesOut)
	return nil
}
