package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the echo command in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("NETCORE_ECHO_MAIN") == "1" {
		os.Args = append([]string{"echo"}, os.Args[len(os.Args)-2:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestEchoCommand(t *testing.T) {
	addr := freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-listen", addr)
	cmd.Env = append(os.Environ(), "NETCORE_ECHO_MAIN=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo did not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, size := range []int{1, 64, 1024, 65536} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(i)
		}
		frame := binary.BigEndian.AppendUint32(nil, uint32(size))
		if _, err := c.Write(append(frame, body...)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4+size)
		if _, err := io.ReadFull(r, got); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if binary.BigEndian.Uint32(got) != uint32(size) || string(got[4:]) != string(body) {
			t.Fatalf("size %d: echo differs", size)
		}
	}
	// A bad length (max+1) closes the connection.
	if _, err := c.Write(binary.BigEndian.AppendUint32(nil, 65537)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection not closed after a bad length")
		}
	}
	// SIGTERM shuts down cleanly.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("echo did not exit on SIGTERM")
	}
}
