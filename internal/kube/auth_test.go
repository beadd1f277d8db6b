package kube

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

// Explain finds a 401 or 403 however client-go delivers it: as a Status,
// inside either dialer's upgrade failure, or only as the SPDY dialer's
// message.
func TestExplainFindsStatusInUpgrades(t *testing.T) {
	unauth := fmt.Errorf("port-forward to pod ns/p: %w", apierrors.NewUnauthorized("Unauthorized"))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))
	for _, tc := range []struct {
		name string
		err  error
		want Cause // "" for an error Explain leaves alone
	}{
		{"other", errors.New("dial tcp: connection refused"), ""},
		{"forbidden", forbidden, CauseForbidden},
		{"upgrade 401", fmt.Errorf("port-forward to pod ns/p: %w", &httpstream.UpgradeFailureError{Cause: apierrors.NewUnauthorized("Unauthorized")}), CauseCredentials},
		{"websocket upgrade 401", fmt.Errorf("port-forward to pod ns/p: %w", &streamhttp.UpgradeFailureError{Cause: apierrors.NewUnauthorized("Unauthorized")}), CauseCredentials},
		{"spdy upgrade 401", errors.New("port-forward to pod ns/p: unable to upgrade connection: Unauthorized"), CauseCredentials},
		{"websocket upgrade 403", &streamhttp.UpgradeFailureError{Cause: forbidden}, CauseForbidden},
		{"spdy upgrade 403", errors.New("port-forward to pod ns/p: unable to upgrade connection: Forbidden"), CauseForbidden},
		{"spdy upgrade 404", errors.New(`port-forward to pod ns/p: unable to upgrade connection: pods "p" not found`), ""},
		{"upgrade other", &httpstream.UpgradeFailureError{Cause: errors.New("bad handshake")}, ""},
		{"401", unauth, CauseCredentials},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Explain(tc.err, "dev", &rest.Config{Host: "https://api:6443"})
			ce, ok := errors.AsType[*ClusterError](got)
			switch {
			case tc.want == "" && (ok || got != tc.err):
				t.Errorf("Explain(%v) = %v, want it unchanged", tc.err, got)
			case tc.want != "" && (!ok || ce.Cause != tc.want):
				t.Errorf("Explain(%v) = %v, want cause %s", tc.err, got, tc.want)
			}
			if errors.Is(got, ErrUnauthorized) != (tc.want == CauseCredentials) {
				t.Errorf("errors.Is(ErrUnauthorized) = %v", errors.Is(got, ErrUnauthorized))
			}
		})
	}
}
