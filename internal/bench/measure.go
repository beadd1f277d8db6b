package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// dial connects to addr; the connection closes when ctx is done.
func dial(ctx context.Context, addr string) (net.Conn, func(), error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return c, func() { stop(); c.Close() }, nil
}

// download asks the source at addr for n bytes and reads them all.
func download(ctx context.Context, addr string, n int64) error {
	c, done, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer done()
	if _, err := fmt.Fprintf(c, "GET %d\n", n); err != nil {
		return fmt.Errorf("send GET: %w", err)
	}
	got, err := drain(c, n)
	if err == nil && got != n {
		err = fmt.Errorf("connection ended after %d of %d bytes", got, n)
	}
	if err != nil {
		return fmt.Errorf("download: %w", ctxErr(ctx, err))
	}
	return nil
}

// drain reads r to its end in 256 KiB reads, as a bulk client would. (A
// plain io.Copy to io.Discard reads 8 KiB at a time whatever buffer it is
// given, which made the client cost several times what the transfer
// needs.) It stops after limit bytes.
func drain(r io.Reader, limit int64) (int64, error) {
	buf := make([]byte, 256<<10)
	var got int64
	for got < limit {
		n, err := r.Read(buf[:min(int64(len(buf)), limit-got)])
		got += int64(n)
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// upload sends n bytes to the sink at addr and waits for its "OK".
func upload(ctx context.Context, addr string, n int64) error {
	c, done, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer done()
	if _, err := fmt.Fprintf(c, "PUT %d\n", n); err != nil {
		return fmt.Errorf("send PUT: %w", err)
	}
	buf := make([]byte, 256<<10)
	for left := n; left > 0; {
		w, err := c.Write(buf[:min(left, int64(len(buf)))])
		if err != nil {
			return fmt.Errorf("upload: %w", ctxErr(ctx, err))
		}
		left -= int64(w)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "OK\n" {
		return fmt.Errorf("upload: want OK, got %q: %w", line, ctxErr(ctx, err))
	}
	return nil
}

// ctxErr prefers the context's error, which explains a closed connection.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// transfer moves total bytes over streams parallel connections, each
// total/streams, in the direction given, and returns the throughput in
// MB/s (10^6 bytes per second).
func transfer(ctx context.Context, addr string, total int64, streams int, up bool) (float64, error) {
	each := total / int64(streams)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range streams {
		wg.Go(func() {
			if up {
				errs[i] = upload(ctx, addr, each)
			} else {
				errs[i] = download(ctx, addr, each)
			}
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(each*int64(streams)) / elapsed.Seconds() / 1e6, nil
}

// ping dials addr, sends PING and returns the time from the start of the
// dial to the first byte of the answer.
func ping(ctx context.Context, addr string) (time.Duration, error) {
	start := time.Now()
	c, done, err := dial(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer done()
	if _, err := io.WriteString(c, "PING\n"); err != nil {
		return 0, fmt.Errorf("send PING: %w", err)
	}
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return 0, fmt.Errorf("read PONG: %w", ctxErr(ctx, err))
	}
	elapsed := time.Since(start)
	rest, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || string(first[:])+rest != "PONG\n" {
		return 0, fmt.Errorf("want PONG, got %q: %v", string(first[:])+rest, err)
	}
	return elapsed, nil
}

// latencyResult is the connect→first byte times of one batch.
type latencyResult struct {
	// Sorted holds the successful connections' times in ms, ascending.
	Sorted []float64
	Failed int
	// FirstErr is the first failure's error.
	FirstErr error
}

// latency opens n connections to addr, concurrency at a time, each with
// one PING, and records connect→first byte.
func latency(ctx context.Context, addr string, n, concurrency int, pace time.Duration) latencyResult {
	var (
		mu   sync.Mutex
		res  latencyResult
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range concurrency {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				d, err := ping(pctx, addr)
				cancel()
				if pace > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(pace):
					}
				}
				mu.Lock()
				if err != nil {
					res.Failed++
					if res.FirstErr == nil {
						res.FirstErr = err
					}
				} else {
					res.Sorted = append(res.Sorted, float64(d)/float64(time.Millisecond))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(res.Sorted)
	return res
}

// dialFunc dials a network address, like net.Dialer.DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// httpRate runs workers clients doing GET / on addr (a host:port) for d,
// with or without keep-alive, connecting with dial (a plain TCP dial when
// nil), and returns the successful requests per second and the count of
// failed ones.
func httpRate(ctx context.Context, dial dialFunc, addr string, workers int, d time.Duration, keepAlive bool) (float64, int64, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr := &http.Transport{
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: workers,
		DialContext:         dial,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	url := "http://" + addr + "/"
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := httpGet(ctx, client, url); err != nil {
					if ctx.Err() != nil {
						return // the window closed mid-request: not a failure
					}
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ok.Load() == 0 {
		err, _ := firstErr.Load().(error)
		return 0, failed.Load(), fmt.Errorf("no request succeeded: %v", err)
	}
	return float64(ok.Load()) / elapsed.Seconds(), failed.Load(), nil
}

func httpGet(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || string(body) != httpBody {
		return fmt.Errorf("GET %s: %s, %d bytes", url, resp.Status, len(body))
	}
	return nil
}

// cpuTimes are the host's CPU counters from /proc/stat, in ticks.
type cpuTimes struct{ busy, total uint64 }

// hostCPU reads the aggregate line of /proc/stat.
func hostCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, errors.New("read /proc/stat: no cpu line")
	}
	var t cpuTimes
	for i, s := range f[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("read /proc/stat: %w", err)
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t, nil
}

// busyPercent returns the share of CPU time (over all cores) that was
// busy between a and b.
func busyPercent(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total) * 100
}

// procStat is what /proc/PID tells about a process.
type procStat struct {
	RSSKiB  int64
	Threads int64
	// CPUTicks is utime+stime in clock ticks (USER_HZ, 100 on Linux).
	CPUTicks int64
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc.
const clockTicks = 100

// readProc reads the RSS and thread count from /proc/PID/status and the
// CPU time from /proc/PID/stat.
func readProc(pid int) (procStat, error) {
	var s procStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			s.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			s.Threads, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	s.CPUTicks, err = parseStatCPU(string(b))
	if err != nil {
		return s, fmt.Errorf("read process %d: %w", pid, err)
	}
	return s, nil
}

// parseStatCPU returns utime+stime from the text of /proc/PID/stat. The
// command name (field 2) may hold spaces, so fields count from its ")".
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("malformed stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed stat: %w", err)
	}
	return u + s, nil
}
