package forward

import (
	"testing"
	"time"
)

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		attempts     int
		unauthorized bool
		want         time.Duration
	}{
		{1, false, 250 * time.Millisecond},
		{2, false, 500 * time.Millisecond},
		{3, false, time.Second},
		{4, false, time.Second},
		{100, false, time.Second},
		{1, true, 250 * time.Millisecond},
		{5, true, 4 * time.Second},
		{8, true, 30 * time.Second},
		{1000, true, 30 * time.Second},
	} {
		if got := retryDelay(tc.attempts, tc.unauthorized); got != tc.want {
			t.Errorf("retryDelay(%d, %v) = %s, want %s", tc.attempts, tc.unauthorized, got, tc.want)
		}
	}
}
