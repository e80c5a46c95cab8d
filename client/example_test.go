package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"clusterchat/chatservice/protocol"
	"clusterchat/client"
)

// A Conn: log in, send a message, read pushes.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "127.0.0.1:8000")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	lr, err := c.LoginPassword(ctx, "alice", "password1")
	if err != nil {
		log.Fatal(err) // an *Error: client.IsErrno(err, 401) for bad credentials
	}
	for _, f := range lr.Friends {
		seq, _, err := c.SendChat(ctx, f.ID, "hello", client.NewCIDGen().Next())
		if client.IsErrno(err, protocol.ErrRateLimited) {
			continue
		}
		fmt.Println("sent as seq", seq)
	}
	for p := range c.Pushes() {
		if p.MsgID == protocol.PushChat {
			m, _ := p.Message()
			fmt.Printf("%s: %s\n", m.FromName, m.Msg)
		}
	}
}

// A Session: reconnects, orders by seq, shows each message once and ACKs.
func ExampleSession() {
	s := client.NewSession(client.SessionOptions{
		Addr: "127.0.0.1:8000", Name: "alice", Password: "password1",
		OnEvent: func(ev client.Event) {
			if ev.Kind == client.EventMessage {
				fmt.Printf("%s #%d %s: %s\n", ev.Conv, ev.Msg.Seq, ev.Msg.FromName, ev.Msg.Msg)
			}
		},
	})
	ctx := context.Background()
	if _, err := s.Login(ctx); err != nil {
		log.Fatal(err)
	}
	go s.Run(ctx)
	if _, err := s.SendChat(ctx, 2, "hello bob"); err != nil { // retried with one cid
		log.Print(err)
	}
	s.Close()
}
