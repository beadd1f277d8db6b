package kube

import clientfeatures "k8s.io/client-go/features"

// kpf turns client-go's WatchListClient feature off for every informer in
// the process. With it on (the default since client-go 0.35), a reflector
// first opens a streaming watch-list, and when that fails with an error it
// deems retriable (connection refused, a DNS failure, a dropped
// connection) it retries inside watchList after a backoff it waits out on
// a plain timer: the stop channel is not looked at while it grows to tens
// of seconds, and the error never reaches the informer's watch error
// handler. So kpf could neither say why a namespace did not sync ("waiting
// for the namespace's caches to sync", whatever the cause) nor stop
// promptly (Ctrl-C took as long as the cluster had been unreachable). With
// it off, reflectors list and then watch, every failure is handed to the
// error handler, and their backoff ends with their context. The
// watch-list saves the API server memory on very large lists; kpf's
// informers list one namespace's services, slices and pods.
func init() {
	clientfeatures.ReplaceFeatureGates(withoutWatchList{clientfeatures.FeatureGates()})
}

// withoutWatchList answers WatchListClient with false and every other
// feature as the gates it wraps do.
type withoutWatchList struct{ clientfeatures.Gates }

func (g withoutWatchList) Enabled(f clientfeatures.Feature) bool {
	if f == clientfeatures.WatchListClient {
		return false
	}
	return g.Gates.Enabled(f)
}
