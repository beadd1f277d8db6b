package svcdial

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kpf-dev/kpf/internal/config"
)

// Target is a cluster service address parsed from a dial address.
type Target struct {
	// Domain is the cluster domain the name ended in ("" for the short
	// forms name.namespace and name.namespace.svc).
	Domain    string
	Service   string
	Namespace string
	// Port is the service port, by number or by name.
	Port config.Port
	// Short is set for the two-label form name.namespace, which could
	// also be an ordinary host name.
	Short bool
}

func (t Target) String() string {
	return fmt.Sprintf("%s.%s:%s", t.Service, t.Namespace, t.Port)
}

// ParseAddress parses "name.namespace[.svc[.DOMAIN]]:port" where port is a
// service port number or name. ok is false for anything that is not such a
// name (an IP address, a single label, a port out of range), which callers
// treat as "not a cluster address".
func ParseAddress(addr string) (t Target, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return t, false
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if net.ParseIP(host) != nil {
		return t, false
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return t, false
	}
	switch {
	case len(labels) == 2:
		t.Short = true
	case labels[2] == "svc":
		t.Domain = strings.Join(labels[3:], ".")
	default:
		return t, false
	}
	t.Service, t.Namespace = labels[0], labels[1]
	if len(validation.IsDNS1035Label(t.Service)) > 0 || len(validation.IsDNS1123Label(t.Namespace)) > 0 {
		return t, false
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return t, false
		}
		t.Port = config.Port{Number: uint16(n)}
	} else {
		if len(validation.IsValidPortName(port)) > 0 {
			return t, false
		}
		t.Port = config.Port{Name: port}
	}
	return t, true
}
