package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// rawRequest sends req on a new connection to addr and returns the
// connection, a reader on it and the response head.
func rawRequest(t *testing.T, addr, req string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return c, br, resp
}

func TestHTTPConnect(t *testing.T) {
	echo := echoServer(t)
	n := &names{m: map[string]string{"echo.ns:7": echo}}
	var logs logBuffer
	addr := start(t, (&HTTP{Dial: n.dial, Log: logs.logger()}).Serve)

	// Bytes sent right behind the request must not be lost.
	c, br, resp := rawRequest(t, addr, "CONNECT echo.ns:7 HTTP/1.1\r\nHost: echo.ns:7\r\n\r\nearly ")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	io.WriteString(c, "bytes")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "early bytes" {
		t.Errorf("tunnel echoed %q, %v", got, err)
	}
	if got := n.lastAsked(); got != "echo.ns:7" {
		t.Errorf("dialled %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "method=CONNECT") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "destination=echo.ns:7 status=200 outcome=ok bytesUp=11 bytesDown=11") {
		t.Errorf("log does not show the tunnel:\n%s", l)
	}
}

func TestHTTPForward(t *testing.T) {
	var got *http.Request
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("Connection", "X-Backend-Hop")
		w.Header().Set("X-Backend-Hop", "1")
		w.Header().Set("X-End-To-End", "kept")
		io.WriteString(w, "hello "+r.Host+" "+r.URL.RequestURI())
	}))
	defer web.Close()
	n := &names{m: map[string]string{"web.ns:8080": web.Listener.Addr().String()}}
	var logs logBuffer
	addr := start(t, (&HTTP{Dial: n.dial, Log: logs.logger()}).Serve)

	_, br, resp := rawRequest(t, addr, "GET http://web.ns:8080/path?q=1 HTTP/1.1\r\n"+
		"Host: web.ns:8080\r\n"+
		"Authorization: Bearer end-to-end-secret\r\n"+
		"Proxy-Authorization: Basic proxy-secret\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Connection: keep-alive, X-Client-Hop\r\n"+
		"X-Client-Hop: 1\r\n"+
		"Keep-Alive: 300\r\n"+
		"TE: gzip\r\n"+
		"Trailer: X-T\r\n"+
		"Upgrade: websocket\r\n"+
		"X-End-To-End: kept\r\n"+
		"\r\n")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "hello web.ns:8080 /path?q=1" {
		t.Fatalf("got %s %q", resp.Status, body)
	}
	_ = br
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "Connection", "X-Client-Hop", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("upstream got hop-by-hop header %s: %q", h, v)
		}
	}
	if got.Header.Get("Authorization") != "Bearer end-to-end-secret" || got.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("end-to-end headers lost: %v", got.Header)
	}
	if v := got.Header.Values("X-Forwarded-For"); v != nil {
		t.Errorf("upstream got X-Forwarded-For %v", v)
	}
	for _, h := range []string{"Keep-Alive", "Proxy-Authenticate", "X-Backend-Hop"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client got hop-by-hop header %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-End-To-End") != "kept" {
		t.Errorf("response end-to-end header lost: %v", resp.Header)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "method=GET") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	l := logs.String()
	if !strings.Contains(l, "destination=web.ns:8080 status=200 outcome=ok") {
		t.Errorf("log does not show the request:\n%s", l)
	}
	if strings.Contains(l, "secret") {
		t.Errorf("log shows a credential:\n%s", l)
	}
}

// TestHTTPClient uses net/http's own proxy support: absolute URIs for http
// and CONNECT for https.
func TestHTTPClient(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain")
	}))
	defer web.Close()
	tlsWeb := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls")
	}))
	defer tlsWeb.Close()
	n := &names{m: map[string]string{
		"web.ns:80":    web.Listener.Addr().String(),
		"https.ns:443": tlsWeb.Listener.Addr().String(),
	}}
	addr := start(t, (&HTTP{Dial: n.dial}).Serve)
	proxyURL, _ := url.Parse("http://" + addr)
	tr := tlsWeb.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(proxyURL)
	tr.TLSClientConfig.ServerName = "example.com" // in the test certificate
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for url, want := range map[string]string{"http://web.ns/": "plain", "https://https.ns/": "tls"} {
		resp, err := client.Get(url)
		if err != nil {
			t.Errorf("GET %s: %v", url, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("GET %s: %q, want %q", url, body, want)
		}
	}
}

func TestHTTPErrors(t *testing.T) {
	n := &names{m: map[string]string{"down.ns:80": closedAddr(t)}}
	addr := start(t, (&HTTP{Dial: n.dial}).Serve)
	tests := []struct {
		name, req string
		status    int
		body      string
	}{
		{"refused forward", "GET http://nope.elsewhere:8080/ HTTP/1.1\r\nHost: nope.elsewhere:8080\r\n\r\n", 403, "nope.elsewhere:8080 is refused"},
		{"refused connect", "CONNECT nope.elsewhere:443 HTTP/1.1\r\nHost: nope.elsewhere:443\r\n\r\n", 403, "nope.elsewhere:443 is refused"},
		{"unreachable forward", "GET http://down.ns/ HTTP/1.1\r\nHost: down.ns\r\n\r\n", 502, "cannot reach down.ns:80"},
		{"unreachable connect", "CONNECT down.ns:80 HTTP/1.1\r\nHost: down.ns:80\r\n\r\n", 502, "cannot reach down.ns:80"},
		{"origin form", "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "this is a proxy"},
		{"https absolute", "GET https://web.ns/ HTTP/1.1\r\nHost: web.ns\r\n\r\n", 400, "tunnel https with CONNECT"},
		{"connect without port", "CONNECT web.ns HTTP/1.1\r\nHost: web.ns\r\n\r\n", 400, "CONNECT needs host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, resp := rawRequest(t, addr, tt.req)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.body) {
				t.Errorf("got %s %q, want %d containing %q", resp.Status, body, tt.status, tt.body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want plain text", ct)
			}
		})
	}
}

// TestServeStopsEverything checks that stopping Serve closes an open
// tunnel and an idle keep-alive connection, for both proxies.
func TestServeStopsEverything(t *testing.T) {
	echo := echoServer(t)
	n := &names{m: map[string]string{"echo.ns:7": echo}}
	for _, kind := range []string{"socks5", "http"} {
		t.Run(kind, func(t *testing.T) {
			ln := listen(t)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				if kind == "socks5" {
					errc <- (&SOCKS5{Dial: n.dial}).Serve(ctx, ln)
				} else {
					errc <- (&HTTP{Dial: n.dial}).Serve(ctx, ln)
				}
			}()
			addr := ln.Addr().String()
			var tunnel net.Conn
			if kind == "socks5" {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if rep := socksConnect(t, c, cmdConnect, "echo.ns", 7); rep != 0 {
					t.Fatalf("reply %#x", rep)
				}
				tunnel = c
			} else {
				c, _, resp := rawRequest(t, addr, "CONNECT echo.ns:7 HTTP/1.1\r\nHost: echo.ns:7\r\n\r\n")
				if resp.StatusCode != 200 {
					t.Fatal(resp.Status)
				}
				tunnel = c
			}
			idle, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()

			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Serve = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
			for _, c := range []net.Conn{tunnel, idle} {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
					t.Errorf("connection still open after Serve returned: %v", err)
				}
			}
			if _, err := net.Dial("tcp", addr); err == nil {
				t.Error("listener still open")
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestHTTPCurl checks the proxy against curl, with and without CONNECT.
func TestHTTPCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.Host+r.URL.Path)
	}))
	defer web.Close()
	n := &names{m: map[string]string{"web.ns:8080": web.Listener.Addr().String()}}
	addr := start(t, (&HTTP{Dial: n.dial}).Serve)
	for _, tunnel := range []bool{false, true} {
		args := []string{"-sS", "--max-time", "10", "--proxy", "http://" + addr, "http://web.ns:8080/x"}
		if tunnel {
			args = slices.Insert(args, 0, "--proxytunnel")
		}
		out, err := exec.Command(curl, args...).CombinedOutput()
		if err != nil || string(out) != "GET web.ns:8080/x" {
			t.Errorf("curl %v: %q, %v", args, out, err)
		}
	}
	out, _ := exec.Command(curl, "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://"+addr, "http://nope.ns:8080/").CombinedOutput()
	if string(out) != "403" {
		t.Errorf("curl to a refused name: status %q, want 403", out)
	}
}
