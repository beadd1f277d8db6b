// Package relay is kpf's relay: a small program that kpf runs as a pod in
// a cluster to reach what has no pod of its own (a managed database, an
// ExternalName service, a UDP server), and the wire protocol kpf speaks to
// it over an ordinary port-forward stream.
//
// Every stream to the relay starts with a request naming what it is for:
//
//	"KPFR" | version 1 | kind (1 tcp, 2 udp, 3 heartbeat) | uint16 length | destination "host:port"
//
// and the relay answers with one reply before anything else:
//
//	code (0 ok, 1 refused, 2 unreachable, 3 bad request) | uint16 length | message
//
// After an ok reply a TCP stream carries the destination's bytes both ways;
// a UDP stream carries datagrams, each as a uint16 length and its bytes, in
// both directions; a heartbeat stream carries one byte from kpf every
// [HeartbeatInterval]. Integers are big-endian.
//
// The relay reaches only the destinations it was started with (see
// [Server.Allow]) and refuses the others, so it is never an open relay; it
// exits by itself when no heartbeat has come for [Server.HeartbeatTimeout],
// so a kpf that died leaves nothing running.
package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// magic starts every request; version is the protocol's.
const (
	magic   = "KPFR"
	version = 1
)

// Kind is what a stream to the relay is for.
type Kind byte

// The stream kinds.
const (
	TCP       Kind = 1
	UDP       Kind = 2
	Heartbeat Kind = 3
)

// String returns "tcp", "udp" or "heartbeat".
func (k Kind) String() string {
	switch k {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case Heartbeat:
		return "heartbeat"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Code is a reply's verdict.
type Code byte

// The reply codes.
const (
	OK Code = iota
	// Refused: the destination is not one the relay was started with.
	Refused
	// Unreachable: the relay could not reach the destination (the
	// message is its dial error).
	Unreachable
	// BadRequest: the request was not understood.
	BadRequest
)

// DefaultListen is where the relay listens in its pod: loopback, which a
// port-forward reaches (the kubelet connects to localhost in the pod's
// network namespace) and no other pod does.
const DefaultListen = "127.0.0.1:7000"

// Port is the relay's port in its pod.
const Port = 7000

// HeartbeatInterval is how often kpf writes a byte on a heartbeat stream.
const HeartbeatInterval = 10 * time.Second

// DefaultHeartbeatTimeout is how long the relay runs without a heartbeat
// before it exits: six missed beats, so that a slow link does not end it,
// and well within the two minutes after which kpf promises a relay whose
// kpf died is gone.
const DefaultHeartbeatTimeout = 60 * time.Second

// MaxDatagram is the largest UDP payload a stream carries: the largest an
// IPv4 UDP datagram can hold.
const MaxDatagram = 65507

// maxDest and maxMessage bound what a peer can make the other read.
const (
	maxDest    = 512
	maxMessage = 1024
)

// Dest is a destination the relay may reach.
type Dest struct {
	Kind Kind // TCP or UDP
	// Host is a DNS name (lower case, without a trailing dot) or an IP
	// address as seen from inside the cluster.
	Host string
	Port uint16
}

// Addr returns "host:port", with an IPv6 address in brackets.
func (d Dest) Addr() string { return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port))) }

// String returns "host:port/proto", the form ParseDest reads.
func (d Dest) String() string { return d.Addr() + "/" + d.Kind.String() }

// ParseDest reads "host:port", "host:port/tcp" or "host:port/udp" (TCP
// when no protocol is given). The host is a DNS name or an IP address;
// names are compared without case and without a trailing dot.
func ParseDest(s string) (Dest, error) {
	addr, proto, hasProto := strings.Cut(s, "/")
	d := Dest{Kind: TCP}
	if hasProto {
		switch proto {
		case "tcp":
		case "udp":
			d.Kind = UDP
		default:
			return Dest{}, fmt.Errorf("destination %q: protocol %q is neither tcp nor udp", s, proto)
		}
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Dest{}, fmt.Errorf("destination %q: port %q is not a number from 1 to 65535", s, port)
	}
	d.Port = uint16(p)
	d.Host, err = normalHost(host)
	if err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	return d, nil
}

// normalHost returns host as destinations compare it, or an error for
// something that is neither an IP address nor a DNS name.
func normalHost(host string) (string, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip.String(), nil
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "" || len(h) > 253 {
		return "", fmt.Errorf("host %q is not a DNS name", host)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q is not a DNS name", host)
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
				return "", fmt.Errorf("host %q is not a DNS name", host)
			}
		}
	}
	return h, nil
}

// Request is the first thing on a stream to the relay.
type Request struct {
	Kind Kind
	// Dest is "host:port"; empty for a heartbeat.
	Dest string
}

// WriteRequest writes r to w in one Write.
func WriteRequest(w io.Writer, r Request) error {
	if len(r.Dest) > maxDest {
		return fmt.Errorf("destination %q is longer than %d bytes", r.Dest, maxDest)
	}
	b := make([]byte, 0, 8+len(r.Dest))
	b = append(b, magic...)
	b = append(b, version, byte(r.Kind))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Dest)))
	b = append(b, r.Dest...)
	_, err := w.Write(b)
	return err
}

// errBadRequest is wrapped by ReadRequest's errors about the request's
// form (as opposed to the stream's).
var errBadRequest = errors.New("bad request")

// ReadRequest reads a request from r.
func ReadRequest(r io.Reader) (Request, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	if string(h[:4]) != magic {
		return Request{}, fmt.Errorf("%w: not a kpf relay request", errBadRequest)
	}
	if h[4] != version {
		return Request{}, fmt.Errorf("%w: protocol version %d, this relay speaks %d", errBadRequest, h[4], version)
	}
	req := Request{Kind: Kind(h[5])}
	if req.Kind < TCP || req.Kind > Heartbeat {
		return Request{}, fmt.Errorf("%w: unknown stream kind %d", errBadRequest, h[5])
	}
	n := binary.BigEndian.Uint16(h[6:])
	if n > maxDest {
		return Request{}, fmt.Errorf("%w: destination of %d bytes", errBadRequest, n)
	}
	dest := make([]byte, n)
	if _, err := io.ReadFull(r, dest); err != nil {
		return Request{}, fmt.Errorf("read request: %w", err)
	}
	req.Dest = string(dest)
	return req, nil
}

// Reply is the relay's answer to a request.
type Reply struct {
	Code    Code
	Message string
}

// WriteReply writes r to w in one Write; a message longer than the
// protocol allows is cut.
func WriteReply(w io.Writer, r Reply) error {
	msg := r.Message
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	b := make([]byte, 0, 3+len(msg))
	b = append(b, byte(r.Code))
	b = binary.BigEndian.AppendUint16(b, uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// ReadReply reads a reply from r. A reply that is not OK is returned as
// a *ReplyError.
func ReadReply(r io.Reader) error {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read the relay's reply: %w", err)
	}
	n := binary.BigEndian.Uint16(h[1:])
	if n > maxMessage {
		return fmt.Errorf("read the relay's reply: message of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("read the relay's reply: %w", err)
	}
	if Code(h[0]) == OK {
		return nil
	}
	return &ReplyError{Code: Code(h[0]), Message: string(msg)}
}

// ErrRefused is wrapped by a ReplyError whose code is Refused.
var ErrRefused = errors.New("destination not allowed")

// ReplyError is a reply that is not OK.
type ReplyError struct {
	Code    Code
	Message string
}

func (e *ReplyError) Error() string {
	switch e.Code {
	case Refused:
		return "the relay refused: " + e.Message
	case Unreachable:
		return "the relay could not reach the destination: " + e.Message
	case BadRequest:
		return "the relay did not understand the request: " + e.Message
	}
	return fmt.Sprintf("the relay answered code %d: %s", e.Code, e.Message)
}

// Unwrap returns ErrRefused for a refusal.
func (e *ReplyError) Unwrap() error {
	if e.Code == Refused {
		return ErrRefused
	}
	return nil
}

// WriteDatagram writes p to w as one frame in one Write.
func WriteDatagram(w io.Writer, p []byte) error {
	if len(p) > MaxDatagram {
		return fmt.Errorf("datagram of %d bytes is larger than %d", len(p), MaxDatagram)
	}
	b := make([]byte, 0, 2+len(p))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
	b = append(b, p...)
	_, err := w.Write(b)
	return err
}

// ReadDatagram reads one frame from r into buf, which must hold
// MaxDatagram bytes, and returns its length. io.EOF means the stream ended
// between frames.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > MaxDatagram || n > len(buf) {
		return 0, fmt.Errorf("datagram of %d bytes is larger than %d", n, min(MaxDatagram, len(buf)))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return n, nil
}
