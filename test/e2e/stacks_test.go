//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dumpStacks saves the goroutine stacks of every process on a stuck
// port-forward path — kpf (from its pprof endpoint), the cluster's API
// server (its /debug/pprof) and node agent (SIGUSR1 makes it write them
// to its log) — into a new directory under $KPF_E2E_DUMP_DIR, or the
// system's temporary directory, which outlives the test. It returns the
// directory. Errors are logged, not fatal: a dump is evidence for a
// failure already on its way, never a failure itself.
func dumpStacks(t *testing.T, m *kpfMetrics, c *cluster, why string) string {
	t.Helper()
	root := os.Getenv("KPF_E2E_DUMP_DIR")
	if root == "" {
		root = os.TempDir()
	}
	dir, err := os.MkdirTemp(root, "kpf-stacks-"+time.Now().Format("150405")+"-")
	if err != nil {
		t.Logf("stack dump: %v", err)
		return ""
	}
	save := func(name string, body []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Logf("stack dump: %v", err)
		}
	}
	save("why.txt", []byte(why+"\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if m != nil {
		body, err := m.get(ctx, "/debug/pprof/goroutine?debug=2")
		if err != nil {
			t.Logf("stack dump of kpf: %v", err)
		}
		save("kpf.txt", body)
	}
	body, err := c.client.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/goroutine").Param("debug", "2").DoRaw(ctx)
	if err != nil {
		t.Logf("stack dump of kube-apiserver: %v", err)
	}
	save("kube-apiserver.txt", body)
	for _, comp := range c.Components {
		if comp.Name != "node-agent" || comp.Log == "" {
			continue
		}
		before, _ := os.Stat(comp.Log)
		if err := syscall.Kill(comp.PID, syscall.SIGUSR1); err != nil {
			t.Logf("stack dump of the node agent: %v", err)
			continue
		}
		// The agent appends the dump to its log; copy what it wrote.
		var off int64
		if before != nil {
			off = before.Size()
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			f, err := os.Open(comp.Log)
			if err != nil {
				break
			}
			f.Seek(off, io.SeekStart)
			tail, _ := io.ReadAll(f)
			f.Close()
			if strings.Contains(string(tail), "=== end of goroutine dump") {
				save("node-agent.txt", tail)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("goroutine stacks of kpf, kube-apiserver and the node agent saved in %s", dir)
	return dir
}

// get fetches path from kpf's metrics endpoint.
func (m *kpfMetrics) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+m.addr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}
