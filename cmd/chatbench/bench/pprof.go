package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// profileServers fetches a CPU profile from every --pprof admin address
// (GET /debug/pprof/profile?seconds=N), starting delay from now and
// lasting cfg.PprofSeconds, capped so that it ends with the phase (phase is
// the phase's expected length). It returns a wait func that blocks until
// the profiles are written and returns their paths.
func (r *run) profileServers(ctx context.Context, delay, phase time.Duration) func() []string {
	cfg := r.cfg
	if len(cfg.PprofAddrs) == 0 {
		return func() []string { return nil }
	}
	secs := cfg.PprofSeconds
	if avail := int((phase - delay) / time.Second); avail < secs {
		secs = max(avail, 1)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		paths []string
	)
	for _, addr := range cfg.PprofAddrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepCtx(ctx, delay) {
				return
			}
			path := filepath.Join(cfg.PprofDir, fmt.Sprintf("%s-%s.pprof", cfg.Scenario, strings.ReplaceAll(addr, ":", "_")))
			if err := fetchProfile(ctx, addr, secs, path); err != nil {
				r.logf("warning: %v", err)
				return
			}
			mu.Lock()
			paths = append(paths, path)
			mu.Unlock()
		}()
	}
	return func() []string {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return paths
	}
}

func fetchProfile(ctx context.Context, addr string, secs int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("profile %s: %w", addr, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("profile %s: %w", addr, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: write %s: %w", addr, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile %s: write %s: %w", addr, path, err)
	}
	return nil
}
