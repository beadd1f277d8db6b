package kube

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

func TestCheckAuth(t *testing.T) {
	unauth := fmt.Errorf("port-forward to pod ns/p: %w", apierrors.NewUnauthorized("Unauthorized"))
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "p", errors.New("no"))
	for _, tc := range []struct {
		name string
		err  error
		want string // prefix of the message; "" for nil
		is   bool
	}{
		{"nil", nil, "", false},
		{"other", errors.New("dial tcp: connection refused"), "dial tcp", false},
		{"forbidden", forbidden, "pods \"p\" is forbidden", false},
		{"upgrade 401", fmt.Errorf("port-forward to pod ns/p: %w", &httpstream.UpgradeFailureError{Cause: apierrors.NewUnauthorized("Unauthorized")}),
			"unauthorized: the API server rejected the credentials (revoked or expired?): port-forward to pod ns/p: unable to upgrade streaming request: Unauthorized", true},
		{"websocket upgrade 401", fmt.Errorf("port-forward to pod ns/p: %w", &streamhttp.UpgradeFailureError{Cause: apierrors.NewUnauthorized("Unauthorized")}),
			"unauthorized: the API server rejected the credentials (revoked or expired?): port-forward to pod ns/p: unable to upgrade streaming request: Unauthorized", true},
		{"spdy upgrade 401", errors.New("port-forward to pod ns/p: unable to upgrade connection: Unauthorized"),
			"unauthorized: the API server rejected the credentials (revoked or expired?): port-forward to pod ns/p: unable to upgrade connection: Unauthorized", true},
		{"spdy upgrade 404", errors.New(`port-forward to pod ns/p: unable to upgrade connection: pods "p" not found`), "port-forward", false},
		{"upgrade other", &httpstream.UpgradeFailureError{Cause: errors.New("bad handshake")}, "unable to upgrade", false},
		{"401", unauth, "unauthorized: the API server rejected the credentials (revoked or expired?): port-forward to pod ns/p: Unauthorized", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckAuth(tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("CheckAuth(nil) = %v", got)
				}
				return
			}
			if !strings.HasPrefix(got.Error(), tc.want) {
				t.Errorf("message %q, want prefix %q", got, tc.want)
			}
			if errors.Is(got, ErrUnauthorized) != tc.is {
				t.Errorf("errors.Is(ErrUnauthorized) = %v, want %v", !tc.is, tc.is)
			}
			if tc.is && CheckAuth(got).Error() != got.Error() {
				t.Errorf("wrapped twice: %v", CheckAuth(got))
			}
		})
	}
}
