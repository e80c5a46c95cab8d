// Command chatclient is the interactive ClusterChat shell.
//
//	chatclient [--addr HOST:PORT] [--plain] [--log-level LEVEL] [--log-file PATH]
//
// On a terminal it is a line editor (history, tab completion, messages
// printed above the prompt without disturbing the line being typed); with
// stdin not a terminal, or --plain, it reads one command per line and prints
// events as lines in a stable format (see --help).
//
// Quick start, with a server on 127.0.0.1:8000 (make run), in two terminals:
//
//	$ chatclient                       $ chatclient
//	> register:alice:password1         > register:bob:password1
//	alice> addfriend:2                 -- alice(1) wants to be your friend ...
//	                                   bob> accept:1
//	alice> chat:2:hello                [12:00:01] alice(1): hello
//
// Type help after login for every command. The shell reconnects by itself
// (with the token), shows every message once and in order, and retries a
// message that was not yet acknowledged without ever storing it twice.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"clusterchat/client/shell"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("chatclient", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8000", "server or balancer address HOST:PORT")
	plain := fs.Bool("plain", false, "plain line mode even on a terminal")
	logLevel := fs.String("log-level", "error", "diagnostics level: debug, info, warn, error")
	logFile := fs.String("log-file", "", "write diagnostics to this file (default: stderr in plain mode, nowhere on a terminal)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: chatclient [--addr HOST:PORT] [--plain] [--log-level LEVEL] [--log-file PATH]\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nOn a terminal: an interactive shell; type help after login.\nColours are off when NO_COLOR is set or output is not a terminal.\n\n%s\n", shell.PlainFormat)
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chatclient: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "chatclient: --log-level: %v\n", err)
		return 2
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	inFd, outFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	interactive := !*plain && term.IsTerminal(inFd) && term.IsTerminal(outFd)

	// On a terminal, stderr would scribble over the line editor.
	logOut := io.Writer(os.Stderr)
	switch {
	case *logFile != "":
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chatclient: --log-file: %v\n", err)
			return 2
		}
		defer f.Close()
		logOut = f
	case interactive:
		logOut = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	cfg := shell.Config{
		Addr:     *addr,
		In:       os.Stdin,
		Out:      os.Stdout,
		Terminal: interactive,
		Color:    interactive && os.Getenv("NO_COLOR") == "",
		Logger:   logger,
	}
	restore := func() {}
	if interactive {
		cfg.Size = func() (int, int, error) { return term.GetSize(outFd) }
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		resize := make(chan struct{}, 1)
		go func() {
			for range winch {
				select {
				case resize <- struct{}{}:
				default:
				}
			}
		}()
		cfg.Resize = resize
		old, err := term.MakeRaw(inFd)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chatclient: terminal: %v\n", err)
			return 1
		}
		restore = func() { _ = term.Restore(inFd, old) }
		defer restore()
	}
	go func() {
		// A signal cannot interrupt a blocked read of stdin: leave at once
		// (the token stays valid; nothing unsent is lost on the server).
		<-sigs
		cancel()
		restore()
		os.Exit(130)
	}()
	if err := shell.Run(ctx, cfg); err != nil && ctx.Err() == nil {
		if interactive {
			fmt.Fprint(os.Stdout, "\r\n")
		}
		fmt.Fprintf(os.Stderr, "chatclient: %v\n", err)
		return 1
	}
	return 0
}
