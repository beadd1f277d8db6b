package dialer_test

import (
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/kpf-dev/kpf/pkg/dialer"
)

// Query Prometheus behind the Service thanos-query in namespace monitoring
// as if inside the cluster: no local port, no root. (It needs a cluster, so
// it is compiled here and run by the end-to-end tests.)
func ExampleDialer() {
	d, err := dialer.New(dialer.Options{
		Kubeconfig:     "",                     // $KUBECONFIG or ~/.kube/config
		DefaultContext: "",                     // the current context
		Namespaces:     []string{"monitoring"}, // also allows thanos-query.monitoring:9090
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer d.Close()

	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	resp, err := client.Get("http://thanos-query.monitoring.svc.cluster.local:9090/api/v1/query?query=up")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.Status, len(body) > 0)

}
