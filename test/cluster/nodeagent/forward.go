package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// Annotation keys a test puts on a pod to steer the node agent.
const (
	// ForwardAnnotationPrefix + "<containerPort>" names the loopback port
	// that a port-forward to that container port reaches. The value is one
	// port, or a comma-separated list from which the agent assigns each pod
	// the entry least used by the pod's live siblings.
	ForwardAnnotationPrefix = "test.kpf.dev/forward-"
	// AssignedAnnotationPrefix + "<containerPort>" records the entry the
	// agent assigned to this pod from a list.
	AssignedAnnotationPrefix = "test.kpf.dev/assigned-forward-"
	// ReadyAnnotation set to "false" keeps a pod Running but not Ready.
	ReadyAnnotation = "test.kpf.dev/ready"
)

// backendPort returns the loopback port that a forward to containerPort of
// pod reaches, or an error worded as a real kubelet's would be.
func backendPort(pod *corev1.Pod, containerPort int32) (int, error) {
	key := strconv.Itoa(int(containerPort))
	v, ok := pod.Annotations[AssignedAnnotationPrefix+key]
	if !ok {
		v, ok = pod.Annotations[ForwardAnnotationPrefix+key]
		if ok && strings.Contains(v, ",") {
			return 0, fmt.Errorf("port %d of pod %s has a backend list but no assignment yet", containerPort, pod.Name)
		}
	}
	if !ok {
		return 0, fmt.Errorf("failed to connect to localhost:%d inside namespace of pod %s: connection refused (no %s%d annotation)", containerPort, pod.Name, ForwardAnnotationPrefix, containerPort)
	}
	p, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("pod %s: annotation %s%d=%q is not a port", pod.Name, ForwardAnnotationPrefix, containerPort, v)
	}
	return p, nil
}

// streamSet tracks what is open for each pod so that deleting a pod can close
// it: the HTTP connections serving its port-forwards and the TCP connections
// to its backends.
type streamSet struct {
	mu    sync.Mutex
	conns map[string]map[io.Closer]struct{} // by pod UID
}

func newStreamSet() *streamSet {
	return &streamSet{conns: map[string]map[io.Closer]struct{}{}}
}

func (s *streamSet) add(uid string, c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns[uid] == nil {
		s.conns[uid] = map[io.Closer]struct{}{}
	}
	s.conns[uid][c] = struct{}{}
}

func (s *streamSet) remove(uid string, c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns[uid], c)
	if len(s.conns[uid]) == 0 {
		delete(s.conns, uid)
	}
}

// closePod closes everything open for the pod and returns how many.
func (s *streamSet) closePod(uid string) int {
	s.mu.Lock()
	cs := s.conns[uid]
	delete(s.conns, uid)
	s.mu.Unlock()
	for c := range cs {
		c.Close()
	}
	return len(cs)
}

// podForwarder implements the streaming server's PortForwarder for one pod.
type podForwarder struct {
	pod *corev1.Pod
	// current returns the pod as the cache has it now, so that a changed
	// annotation takes effect for the next stream of an open session, as a
	// process starting or stopping to listen in a real pod would.
	current func() (*corev1.Pod, error)
	streams *streamSet
	// relayPort, if not 0, is the loopback port of the pod's relay
	// process, which every port of the pod reaches.
	relayPort int
}

// PortForward copies between stream and the pod's loopback backend.
func (f podForwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	pod := f.pod
	if p, err := f.current(); err == nil && p.UID == f.pod.UID {
		pod = p
	}
	backend, err := f.relayPort, error(nil)
	if backend == 0 {
		backend, err = backendPort(pod, port)
	}
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(backend)))
	if err != nil {
		return fmt.Errorf("failed to connect to localhost:%d inside namespace of pod %s: %w", port, f.pod.Name, err)
	}
	uid := string(f.pod.UID)
	f.streams.add(uid, conn)
	defer f.streams.remove(uid, conn)
	defer conn.Close()

	go func() {
		// Client to backend; when the client half-closes, pass that on so
		// the backend can finish its answer.
		io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	// The forward ends when the backend has finished answering, as with a
	// real kubelet; the deferred Close then ends the copy above.
	if _, err := io.Copy(stream, conn); err != nil && !isClosedErr(err) {
		return fmt.Errorf("copy from localhost:%d: %w", port, err)
	}
	return nil
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "connection reset") ||
		strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "stream reset")
}
