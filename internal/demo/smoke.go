package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Check is how the smoke test reaches one forward of forwards.yaml on its
// local port and tells whether the answer came from that forward's backend.
type Check struct {
	// Forward is the forward's name in forwards.yaml.
	Forward string
	// Port is the forward's local port on 127.0.0.1.
	Port int
	// Try is the equivalent command for a person to run.
	Try string
	// probe dials addr and returns the answer, or an error when the answer
	// is missing or is not from the right backend.
	probe func(ctx context.Context, addr string) (string, error)
}

// Checks returns one check per forward of the repository's forwards.yaml,
// whose local ports are fixed.
func Checks() []Check {
	return []Check{
		{Forward: "web", Port: 18080, Try: "curl http://127.0.0.1:18080/", probe: probeWeb},
		{Forward: "api", Port: 18081, Try: "curl http://127.0.0.1:18081/", probe: probeAPI},
		{Forward: "echo", Port: 17000, Try: "echo hi | nc 127.0.0.1 17000", probe: probeEcho},
		{Forward: "db", Port: 15432, Try: "echo 'select 1' | nc 127.0.0.1 15432", probe: probeDB},
		{Forward: "metrics", Port: 19090, Try: "curl http://127.0.0.1:19090/metrics", probe: probeMetrics},
	}
}

// Result is the outcome of one check.
type Result struct {
	Forward string
	Addr    string
	// Answer is what the backend said (first line, or the identifying
	// line), set when Err is nil.
	Answer string
	Err    error
}

// Run probes the check's local port once.
func (c Check) Run(ctx context.Context) Result {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	answer, err := c.probe(ctx, addr)
	return Result{Forward: c.Forward, Addr: addr, Answer: answer, Err: err}
}

// RunChecks runs every check, retrying each that fails every 250ms until
// it passes or ctx is done, and returns the last result of each. A forward
// may take a moment to come up after kpf reports it, and a retry also
// covers a pod being replaced meanwhile.
func RunChecks(ctx context.Context, checks []Check) []Result {
	results := make([]Result, len(checks))
	for i, c := range checks {
		for {
			results[i] = c.Run(ctx)
			if results[i].Err == nil || ctx.Err() != nil {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return results
}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// A fresh transport per request: every probe goes through a new
	// connection and so through kpf's current choice of pod.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

func probeWeb(ctx context.Context, addr string) (string, error) {
	body, err := httpGet(ctx, "http://"+addr+"/")
	if err != nil {
		return "", err
	}
	for replica := 1; replica <= 2; replica++ {
		if body == webGreeting(replica) {
			return strings.TrimSpace(body), nil
		}
	}
	return "", fmt.Errorf("answer is not from a web backend: %q", body)
}

func probeAPI(ctx context.Context, addr string) (string, error) {
	body, err := httpGet(ctx, "http://"+addr+"/")
	if err != nil {
		return "", err
	}
	var a apiAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return "", fmt.Errorf("answer is not JSON: %w: %q", err, body)
	}
	if a.Service != "api" || a.Backend < 1 || a.Backend > 2 {
		return "", fmt.Errorf("answer is not from an api backend: %q", body)
	}
	return fmt.Sprintf(`{"service":%q,"backend":%d,...}`, a.Service, a.Backend), nil
}

func probeMetrics(ctx context.Context, addr string) (string, error) {
	body, err := httpGet(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(body, "\n") {
		if line == metricsInfoLine(1) {
			return line, nil
		}
	}
	return "", fmt.Errorf("answer is not from the metrics backend: %q", body)
}

// lineConn dials addr for a line protocol, with ctx's deadline on every
// read and write.
func lineConn(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return c, bufio.NewReader(c), nil
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "", errors.New("connection closed before a full line")
		}
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func probeEcho(ctx context.Context, addr string) (string, error) {
	c, r, err := lineConn(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	greeting, err := readLine(r)
	if err != nil {
		return "", fmt.Errorf("read greeting: %w", err)
	}
	if greeting != echoGreeting(1) && greeting != echoGreeting(2) {
		return "", fmt.Errorf("greeting is not from an echo backend: %q", greeting)
	}
	const msg = "hello through kpf"
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return "", err
	}
	echoed, err := readLine(r)
	if err != nil {
		return "", fmt.Errorf("read echo: %w", err)
	}
	if echoed != msg {
		return "", fmt.Errorf("sent %q, got back %q", msg, echoed)
	}
	return greeting + ", echoed " + strconv.Quote(echoed), nil
}

func probeDB(ctx context.Context, addr string) (string, error) {
	c, r, err := lineConn(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	const query = "select 1"
	if _, err := fmt.Fprintln(c, query); err != nil {
		return "", err
	}
	reply, err := readLine(r)
	if err != nil {
		return "", fmt.Errorf("read reply: %w", err)
	}
	if reply != dbReply(query) {
		return "", fmt.Errorf("answer is not from the db backend: sent %q, got %q", query, reply)
	}
	return reply, nil
}
