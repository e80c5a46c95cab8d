// Command fakechatserver stands in for bin/chatserver in scripts/cluster's
// test: it accepts the same flags, answers /healthz on --admin, and on
// --listen reads the PROXY protocol line nginx sends and writes back
// "NODE LINE". It exits 0 on SIGTERM.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	listen := flag.String("listen", "", "")
	admin := flag.String("admin", "", "")
	node := flag.String("node", "", "")
	store := flag.String("store", "", "")
	bus := flag.String("bus", "", "")
	proxy := flag.Bool("proxy-protocol", false, "")
	flag.Parse()
	if !strings.HasPrefix(*store, "mysql://root@tcp(127.0.0.1:") || !strings.HasPrefix(*bus, "redis://127.0.0.1:") || !*proxy {
		fmt.Fprintf(os.Stderr, "unexpected flags: %q\n", os.Args)
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "%s %s", *node, line)
			}()
		}
	}()
	go func() {
		err := http.ListenAndServe(*admin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}
