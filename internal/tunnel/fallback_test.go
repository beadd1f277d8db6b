package tunnel

import (
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	streamhttp "k8s.io/streaming/pkg/httpstream"
)

func TestFallBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"apimachinery upgrade failure", &httpstream.UpgradeFailureError{Cause: errors.New("bad handshake")}, true},
		{"streaming upgrade failure", fmt.Errorf("dial: %w", &streamhttp.UpgradeFailureError{Cause: errors.New("bad handshake")}), true},
		{"401 on the WebSocket upgrade", &streamhttp.UpgradeFailureError{Cause: apierrors.NewUnauthorized("Unauthorized")}, false},
		{"403 on the WebSocket upgrade (RBAC may allow only SPDY's create)", &streamhttp.UpgradeFailureError{
			Cause: apierrors.NewForbidden(schema.GroupResource{Resource: "pods/portforward"}, "p", errors.New("no get"))}, true},
		{"connection refused", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
	} {
		if got := fallBack(tc.err); got != tc.want {
			t.Errorf("%s: fallBack = %v, want %v", tc.name, got, tc.want)
		}
	}
}
