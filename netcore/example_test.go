package netcore_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"clusterchat/netcore"
)

// An echo server with the default length-field codec, and a client that
// sends one frame and reads it back.
func Example() {
	srv, err := netcore.NewServer(netcore.Options{
		Addr:        "127.0.0.1:0",
		Loops:       1,
		IdleTimeout: time.Minute,
		Logger:      slog.New(slog.DiscardHandler),
		OnMessage: func(c *netcore.Conn, frame []byte) {
			if err := c.Send(frame); err != nil {
				c.ForceClose(netcore.ReasonForced)
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Start(); err != nil {
		fmt.Println(err)
		return
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	msg := []byte("hello")
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
	if _, err := conn.Write(append(frame, msg...)); err != nil {
		fmt.Println(err)
		return
	}
	reply := make([]byte, 4+len(msg))
	if _, err := io.ReadFull(conn, reply); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d %s\n", binary.BigEndian.Uint32(reply), reply[4:])
	// Output: 5 hello
}

// Blocking work goes through an Executor queue per connection; a full
// queue closes the connection for ReasonOverload.
func ExampleExecutor() {
	exec := netcore.NewExecutor(netcore.ExecutorOptions{Workers: 4, QueueLen: 64})
	defer exec.Close(context.Background())
	opts := netcore.Options{
		Addr: "127.0.0.1:0",
		OnConnect: func(c *netcore.Conn) {
			c.SetValue(exec.NewQueue())
		},
		OnMessage: func(c *netcore.Conn, frame []byte) {
			q := c.Value().(*netcore.Queue)
			if err := q.Submit(func() {
				// Blocking work here (database, hashing), then reply.
				_ = c.Send(frame)
			}); err != nil {
				c.ForceClose(netcore.ReasonOverload)
			}
		},
	}
	_ = opts
	fmt.Println("configured")
	// Output: configured
}
