package netcore

import "errors"

// Sentinel errors. Test for them with errors.Is: the errors netcore returns
// wrap them with context.
var (
	// ErrFrameEmpty reports a length-field frame whose length is 0.
	ErrFrameEmpty = errors.New("netcore: empty frame")
	// ErrFrameTooLarge reports a frame whose declared length exceeds the
	// codec's maximum.
	ErrFrameTooLarge = errors.New("netcore: frame too large")
	// ErrLineTooLong reports a line (line codec) longer than its maximum
	// before a CRLF was seen.
	ErrLineTooLong = errors.New("netcore: line too long")
	// ErrBadLine reports a frame that the line codec cannot encode because
	// it contains a CRLF.
	ErrBadLine = errors.New("netcore: line contains CRLF")
	// ErrBadProxyHeader reports an invalid PROXY protocol header.
	ErrBadProxyHeader = errors.New("netcore: bad PROXY protocol header")
	// ErrConnClosed is returned by Send once the connection is closed or
	// shutting down.
	ErrConnClosed = errors.New("netcore: connection closed")
	// ErrQueueFull is returned by Queue.Submit when the queue already holds
	// ExecutorOptions.QueueLen tasks.
	ErrQueueFull = errors.New("netcore: executor queue full")
	// ErrExecutorClosed is returned by Queue.Submit after Executor.Close.
	ErrExecutorClosed = errors.New("netcore: executor closed")
	// ErrServerClosed is returned by Start after Shutdown, and by a second
	// Start.
	ErrServerClosed = errors.New("netcore: server closed")
)
