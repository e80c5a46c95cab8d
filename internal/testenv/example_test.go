package testenv_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"clusterchat/internal/testenv"
)

// A package whose tests share one MariaDB and one Redis starts them in
// TestMain and stops them (by their own pids) before exiting.
func ExampleStartMariaDB() {
	var m *testing.M // in a real package: func TestMain(m *testing.M)
	os.Exit(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		dir, err := os.MkdirTemp("", "mypkg-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		db, err := testenv.StartMariaDB(ctx, dir+"/mariadb")
		if err != nil {
			fmt.Fprintln(os.Stderr, err) // names `make deps` if mariadbd is missing
			return 1
		}
		defer db.Stop()
		if err := db.CreateDatabase(ctx, "chat"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		rds, err := testenv.StartRedis(ctx, dir+"/redis")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer rds.Stop()
		_ = db.DSN("chat")      // root@tcp(127.0.0.1:PORT)/chat?parseTime=false
		_ = db.StoreURL("chat") // mysql://root@tcp(127.0.0.1:PORT)/chat (chatserver --store)
		_ = rds.URL()           // redis://127.0.0.1:PORT/0 (chatserver --bus)
		return m.Run()
	}())
}

// One test's own services, stopped by t.Cleanup.
func ExampleNginxForTest() {
	var t *testing.T // in a real test: func TestX(t *testing.T)
	db := testenv.MariaDBForTest(t)
	rds := testenv.RedisForTest(t)
	// ... start chatservers on ports p1, p2 with db.StoreURL("chat") and
	// rds.URL() (testenv.StartProcess, then Process.WaitReady) ...
	_, _ = db.StoreURL("chat"), rds.URL()
	p1, p2 := 6000, 6002
	n := testenv.NginxForTest(t, testenv.NginxConfig{
		Upstreams:     []string{fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)},
		ProxyProtocol: true,
	})
	_ = n.Addr() // clients dial this
}
