package client

import (
	"log/slog"
	"time"

	"clusterchat/chatservice/protocol"
)

// Options configure a Conn. The zero value of every field means its default.
type Options struct {
	// DialTimeout bounds the TCP connect (default 5 s; the context passed to
	// Dial can shorten it).
	DialTimeout time.Duration
	// WriteTimeout bounds one socket write (default 10 s); a write that
	// cannot finish in time closes the connection.
	WriteTimeout time.Duration
	// Logger receives debug and warning logs (default: discard).
	Logger *slog.Logger
	// PushBuffer is the capacity of the Pushes channel (default 4096). When
	// it is full the reader waits, which also delays responses: drain it, or
	// use PushHandler.
	PushBuffer int
	// PushHandler, when set, is called on the reader goroutine for every push
	// instead of sending it to the Pushes channel (which then stays empty and
	// is closed when the connection ends). It must not block for long and
	// must not call Do on the same Conn and wait for the answer.
	PushHandler func(Push)
	// MaxFrame is the largest frame body accepted from the server (default
	// 16 MiB); a larger header closes the connection.
	MaxFrame int
	// MaxSendFrame is the largest frame body Do will send (default 65536,
	// the server's default max_frame); larger requests fail with
	// ErrFrameTooLarge without being sent.
	MaxSendFrame int
	// KeepAlive, when > 0, sends a PING whenever no frame was sent for that
	// long, so that the server's idle timeout (90 s) never fires; a PING
	// left unanswered for that long closes the connection (dead peer).
	// Default 0 (off); Session uses 30 s.
	KeepAlive time.Duration
}

// Option changes Options (functional options for Dial).
type Option func(*Options)

// WithOptions replaces all options at once.
func WithOptions(o Options) Option { return func(p *Options) { *p = o } }

// WithDialTimeout sets Options.DialTimeout.
func WithDialTimeout(d time.Duration) Option { return func(o *Options) { o.DialTimeout = d } }

// WithWriteTimeout sets Options.WriteTimeout.
func WithWriteTimeout(d time.Duration) Option { return func(o *Options) { o.WriteTimeout = d } }

// WithLogger sets Options.Logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithPushBuffer sets Options.PushBuffer.
func WithPushBuffer(n int) Option { return func(o *Options) { o.PushBuffer = n } }

// WithPushHandler sets Options.PushHandler.
func WithPushHandler(h func(Push)) Option { return func(o *Options) { o.PushHandler = h } }

// WithMaxFrame sets Options.MaxFrame.
func WithMaxFrame(n int) Option { return func(o *Options) { o.MaxFrame = n } }

// WithMaxSendFrame sets Options.MaxSendFrame.
func WithMaxSendFrame(n int) Option { return func(o *Options) { o.MaxSendFrame = n } }

// WithKeepAlive sets Options.KeepAlive.
func WithKeepAlive(d time.Duration) Option { return func(o *Options) { o.KeepAlive = d } }

func (o *Options) setDefaults() {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PushBuffer <= 0 {
		o.PushBuffer = 4096
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = 16 << 20
	}
	if o.MaxSendFrame <= 0 {
		o.MaxSendFrame = protocol.DefaultMaxFrame
	}
}
