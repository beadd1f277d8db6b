package kube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// Cause classifies why the API server of a context could not be used.
type Cause string

// The causes Explain tells apart.
const (
	CauseRefused      Cause = "refused"           // nothing listens at the server's address
	CauseDNS          Cause = "dns"               // the server's name does not resolve
	CauseTimeout      Cause = "timeout"           // no answer in time
	CauseUnreachable  Cause = "unreachable"       // no route, network down
	CauseTLSAuthority Cause = "tls-authority"     // certificate from an authority the kubeconfig does not trust
	CauseTLSName      Cause = "tls-name"          // certificate for another name
	CauseTLSExpired   Cause = "tls-expired"       // certificate expired or not yet valid
	CauseTLS          Cause = "tls"               // another TLS failure
	CauseCredentials  Cause = "credentials"       // 401: credentials rejected
	CauseCredPlugin   Cause = "credential-plugin" // the exec credential plugin failed
	CauseForbidden    Cause = "forbidden"         // 403: RBAC denies a verb
	CauseNotFound     Cause = "not-found"         // 404: the server lacks an API
	CauseOther        Cause = "other"
)

// ClusterError is an error talking to a context's API server, with its
// cause told apart and a message that names the context and the server
// and says what to do. It wraps the original error (and ErrUnauthorized
// for CauseCredentials), and never carries credentials.
type ClusterError struct {
	Cause   Cause
	Context string
	Server  string
	Err     error
	msg     string
}

func (e *ClusterError) Error() string { return e.msg }

func (e *ClusterError) Unwrap() []error {
	if e.Cause == CauseCredentials {
		return []error{ErrUnauthorized, e.Err}
	}
	return []error{e.Err}
}

// Explain classifies err, an error from talking to the API server of the
// context named context whose client configuration is cfg (nil if
// unknown), into a *ClusterError whose message leads with the cause and
// ends with what to do. An error it cannot classify, or that is already a
// *ClusterError, is returned as it is; nil stays nil.
func Explain(err error, context string, cfg *rest.Config) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*ClusterError](err); ok {
		return err
	}
	server, host := "", ""
	var plugin string
	if cfg != nil {
		server = cfg.Host
		if u, perr := url.Parse(cfg.Host); perr == nil {
			host = u.Hostname()
		}
		if cfg.ExecProvider != nil {
			plugin = cfg.ExecProvider.Command
		}
	}
	at := fmt.Sprintf("the API server %s of context %q", server, context)
	e := &ClusterError{Context: context, Server: server, Err: err}
	switch {
	case isCredPluginFailure(err):
		e.Cause = CauseCredPlugin
		e.msg = fmt.Sprintf("the credential plugin %q of context %q failed: %s (run your cluster's login command, or the plugin by hand to see why)", plugin, context, pluginFailure(err))
	case hasStatus(err, metav1.StatusReasonUnauthorized):
		e.Cause = CauseCredentials
		e.msg = fmt.Sprintf("%s rejected the credentials (401): they are expired, revoked or wrong", at)
		if plugin != "" {
			e.msg += fmt.Sprintf("; they come from the plugin %q: run your cluster's login command (e.g. aws sso login, gcloud auth login, az login, kubelogin) and kpf retries", plugin)
		} else {
			e.msg += "; get new ones (your cluster's login tool rewrites the kubeconfig) and kpf retries"
		}
	case hasStatus(err, metav1.StatusReasonForbidden):
		e.Cause = CauseForbidden
		e.msg = fmt.Sprintf("%s: %s (ask for the role in kpf's docs/rbac.md)", at, forbiddenWhat(err))
	case apierrors.IsNotFound(err):
		e.Cause = CauseNotFound
		e.msg = fmt.Sprintf("%s does not serve an API kpf needs: %s (kpf needs Kubernetes 1.21 or later, with discovery.k8s.io/v1)", at, apiMessage(err))
	case isDNS(err):
		e.Cause = CauseDNS
		e.msg = fmt.Sprintf("cannot resolve %s, the host of %s: is your VPN up, and does the cluster still exist?", host, at)
	case isAny(err, refusedErrnos):
		e.Cause = CauseRefused
		e.msg = fmt.Sprintf("%s refused the connection: is the cluster running, and your VPN or tunnel up?", at)
	case isAny(err, unreachableErrnos):
		e.Cause = CauseUnreachable
		e.msg = fmt.Sprintf("no route to %s: is your network or VPN up?", at)
	case isSilent(err):
		e.Cause = CauseTimeout
		quiet, _ := silent(err)
		e.msg = fmt.Sprintf("%s stopped answering: %s: is your network or VPN up? (a laptop that slept, or a firewall that drops packets, looks like this too); kpf reconnects", at, quiet)
	case isTimeout(err):
		e.Cause = CauseTimeout
		e.msg = fmt.Sprintf("%s did not answer in time: is your VPN up? (a firewall that drops packets looks like this too)", at)
	default:
		if cause, what := tlsCause(err, host); cause != "" {
			e.Cause = cause
			e.msg = fmt.Sprintf("%s: %s", at, what)
			break
		}
		return err
	}
	return e
}

// isAny reports whether err is any of targets.
func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

func isDNS(err error) bool {
	_, ok := errors.AsType[*net.DNSError](err)
	return ok
}

// silence is an error that says the API server stopped answering and
// for how long (a stalled port-forward session's: tunnel.StallError).
type silence interface {
	error
	Silent() time.Duration
}

// silent returns the silence err wraps, if any.
func silent(err error) (silence, bool) { return errors.AsType[silence](err) }

func isSilent(err error) bool {
	_, ok := silent(err)
	return ok
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || isAny(err, timedOutErrnos) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// tlsCause tells which TLS check failed, and how to fix it.
func tlsCause(err error, host string) (Cause, string) {
	if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
		return CauseTLSAuthority, "its certificate is signed by an authority the kubeconfig does not trust: get the cluster's current certificate-authority-data (your cluster's login tool rewrites the kubeconfig); never turn off verification"
	}
	if he, ok := errors.AsType[x509.HostnameError](err); ok {
		return CauseTLSName, fmt.Sprintf("its certificate is for %s, not %s: is the server address in the kubeconfig right?", certNames(he.Certificate), host)
	}
	if ce, ok := errors.AsType[x509.CertificateInvalidError](err); ok && ce.Reason == x509.Expired {
		return CauseTLSExpired, fmt.Sprintf("its certificate is expired or not yet valid (%s): check this machine's clock; if it is right, the cluster's certificate needs renewing", ce.Detail)
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		return CauseTLS, "its certificate was refused: " + err.Error()
	}
	if strings.Contains(err.Error(), "tls: ") {
		return CauseTLS, "the TLS handshake failed: " + lastPart(err.Error())
	}
	return "", ""
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "another name"
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return c.Subject.CommonName
	}
	if len(names) > 4 {
		names = append(names[:4], "...")
	}
	return strings.Join(names, ", ")
}

// forbiddenWhat is the API server's own sentence about a 403, which names
// the user, the verb, the resource and the namespace.
func forbiddenWhat(err error) string {
	return "permission denied: " + apiMessage(err)
}

// apiMessage is the message of the API server's Status in err.
func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}

// isCredPluginFailure recognises client-go's exec credential plugin
// errors ("getting credentials: exec: ..."), which it returns as text.
func isCredPluginFailure(err error) bool {
	return strings.Contains(err.Error(), "getting credentials: ")
}

// pluginFailure is the part of a plugin failure after "getting
// credentials: ", without the request that carried it.
func pluginFailure(err error) string {
	s := err.Error()
	if i := strings.Index(s, "getting credentials: "); i >= 0 {
		s = s[i+len("getting credentials: "):]
	}
	return s
}

// lastPart is the text after the last ": " of an error chain, the deepest
// cause.
func lastPart(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

// hasStatus reports whether err is the API server's answer with the
// given reason (Unauthorized, Forbidden), including in the cause of a
// failed port-forward upgrade, which client-go does not unwrap: its
// WebSocket dialer fails with k8s.io/streaming's type, its SPDY one with
// apimachinery's, or only with the message.
func hasStatus(err error, reason metav1.StatusReason) bool {
	if apierrors.ReasonForError(err) == reason {
		return true
	}
	var up *httpstream.UpgradeFailureError
	if errors.As(err, &up) && up.Cause != nil && hasStatus(up.Cause, reason) {
		return true
	}
	var sup *streamhttp.UpgradeFailureError
	if errors.As(err, &sup) && sup.Cause != nil && hasStatus(sup.Cause, reason) {
		return true
	}
	if strings.HasSuffix(err.Error(), "unable to upgrade connection: "+string(reason)) {
		return true
	}
	// A refused upgrade whose body the dialer could not decode as a
	// Status keeps only the API server's sentence.
	return reason == metav1.StatusReasonForbidden && upgradeSentence(err) != ""
}

// upgradeSentence is the API server's sentence in a refused port-forward
// upgrade, or "".
func upgradeSentence(err error) string {
	if _, sentence, ok := strings.Cut(err.Error(), "unable to upgrade connection: "); ok && strings.Contains(sentence, " is forbidden: ") {
		return sentence
	}
	return ""
}
