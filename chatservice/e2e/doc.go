// Package e2e is the end-to-end test suite of the chat server: a raw
// protocol client (Client), helpers that build and run real chatserver
// processes (BuildServer, StartServer, ServerProc), and, in the _test.go
// files, a suite that checks the rules of the wire protocol (PROTOCOL.md)
// over real TCP.
//
// The suite (RunSuite) is parameterised over a Target, so the same tests run
// against one node (TestOneNode: SQLite and the in-process bus), against the
// cluster through nginx and against each of its servers directly
// (TestCluster: private MariaDB, Redis, two chatservers and nginx started
// with internal/testenv). TestCluster also runs cross-server tests and fault
// tests (kill -9 of a server, a Redis restart, MariaDB stopped for 10 s, the
// balancer dying) under continuous traffic, with a checker of what every
// user sees afterwards.
//
//	go test -race ./chatservice/e2e/                       # builds cmd/chatserver in TestMain
//	go test -race -run TestOneNode ./chatservice/e2e/      # one node only (~20 s)
//
// Environment:
//
//	E2E_CHATSERVER=/path/chatserver  use this binary instead of building one
//	E2E_RACE_SERVER=1                build the server with -race (its data race
//	                                 reports fail the test that ran it)
//	E2E_KNOWN_GAPS=1                 also run the tests of known gaps
//	E2E_NGINX_TEMPLATE=/path.conf    an nginx template other than nginx/nginx.conf
//
// A failing test logs the frame transcript of each of its connections
// (→ sent, ← received, × closed) and the tail of the server logs.
package e2e
