package tunnel

import "testing"

func TestPodTrafficSpreadsForBulkOnly(t *testing.T) {
	// Each step is one event: 'b' a connection becomes bulk, 'B' a bulk
	// one ends, 's' one ends short, '0' one ends having moved nothing.
	short := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = 's'
		}
		return string(b)
	}
	tests := []struct {
		name   string
		events string
		spread bool
	}{
		{"nothing known", "", true},
		{"a few short ones", short(shortRunBeforeOneSession - 1), true},
		{"a run of short ones", short(shortRunBeforeOneSession), false},
		{"empty connections say nothing", short(shortRunBeforeOneSession-1) + "0000", true},
		{"a bulk transfer starts after short ones", short(shortRunBeforeOneSession) + "b", true},
		{"short ones while a bulk transfer is open", "b" + short(2*shortRunBeforeOneSession), true},
		{"bulk transfer ended, then short ones", "bB" + short(shortRunBeforeOneSession-1), true},
		{"bulk transfer ended, then a run of short ones", "bB" + short(shortRunBeforeOneSession), false},
		{"two bulk, one ended", "bbB" + short(shortRunBeforeOneSession), true},
		{"both ended", "bbBB" + short(shortRunBeforeOneSession), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr podTraffic
			for _, e := range tt.events {
				switch e {
				case 'b':
					tr.becameBulk()
				case 'B':
					tr.ended(bulkBytes, true)
				case 's':
					tr.ended(100, false)
				case '0':
					tr.ended(0, false)
				}
			}
			if got := tr.spread(); got != tt.spread {
				t.Errorf("spread after %q = %v, want %v (%+v)", tt.events, got, tt.spread, tr)
			}
		})
	}
	if !(*podTraffic)(nil).spread() {
		t.Error("a pod with no record does not spread")
	}
}
