package tunnel

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/kpf-dev/kpf/pkg/spdyconn"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
)

// spdyUpgrader opens a SPDY port-forward connection as client-go's SPDY
// round tripper does, but with kpf's own SPDY connection (spdyconn) over
// the upgraded connection.
// It is the innermost round tripper: the config's wrappers (authentication,
// user agent, impersonation) wrap it as they wrap client-go's.
type spdyUpgrader struct {
	*spdy.SpdyRoundTripper
	conn net.Conn
}

// spdyRoundTripperFor is spdytransport.RoundTripperFor with a
// spdyUpgrader.
func spdyRoundTripperFor(cfg *restclient.Config) (http.RoundTripper, *spdyUpgrader, error) {
	tlsConfig, err := restclient.TLSConfigFor(cfg)
	if err != nil {
		return nil, nil, err
	}
	proxy := http.ProxyFromEnvironment
	if cfg.Proxy != nil {
		proxy = cfg.Proxy
	}
	inner, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{TLS: tlsConfig, Proxier: proxy, PingPeriod: portforward.PingPeriod})
	if err != nil {
		return nil, nil, err
	}
	up := &spdyUpgrader{SpdyRoundTripper: inner}
	rt, err := restclient.HTTPWrappersForConfig(cfg, up)
	if err != nil {
		return nil, nil, err
	}
	return rt, up, nil
}

// RoundTrip sends the upgrade request and reads the response, keeping the
// connection for NewConnection.
func (u *spdyUpgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header = req.Header.Clone()
	req.Header.Add(httpstream.HeaderConnection, httpstream.HeaderUpgrade)
	req.Header.Add(httpstream.HeaderUpgrade, spdy.HeaderSpdy31)
	conn, err := u.SpdyRoundTripper.Dial(req)
	if err != nil {
		return nil, err
	}
	// The server sends nothing after its 101 until kpf opens a stream,
	// so the reader holds no bytes of the SPDY connection.
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	u.conn = conn
	return resp, nil
}

// NewConnection returns the SPDY connection over the upgraded connection,
// or client-go's error for a response that is not an upgrade.
func (u *spdyUpgrader) NewConnection(resp *http.Response) (httpstream.Connection, error) {
	upgraded := resp.StatusCode == http.StatusSwitchingProtocols &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderConnection)), strings.ToLower(httpstream.HeaderUpgrade)) &&
		strings.Contains(strings.ToLower(resp.Header.Get(httpstream.HeaderUpgrade)), strings.ToLower(spdy.HeaderSpdy31))
	if u.conn == nil {
		return nil, errors.New("unable to upgrade connection: no connection was upgraded")
	}
	if !upgraded {
		u.conn.Close()
		// client-go's upgrader reads the body into its error message and
		// touches no connection on this path.
		if _, err := u.SpdyRoundTripper.NewConnection(resp); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("unable to upgrade connection: status %d", resp.StatusCode)
	}
	return spdyconn.New(u.conn, portforward.PingPeriod)
}
