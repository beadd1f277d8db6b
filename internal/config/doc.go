// Package config reads, validates and watches kpf's forwards.yaml.
//
// A forwards.yaml declares the port-forwards kpf keeps running, the way a
// docker-compose file declares containers:
//
//	# yaml-language-server: $schema=https://raw.githubusercontent.com/kpf-dev/kpf/main/schema/forwards.schema.json
//	version: 1
//	defaults:
//	  context: dev          # kubeconfig context name; absent = current-context
//	  namespace: default
//	  address: 127.0.0.1
//	  waitForReady: 30s
//	  balance: first        # first | round-robin
//	  health: {tcp: true, interval: 10s, timeout: 5s, threshold: 3}
//	forwards:
//	  - name: thanos
//	    service: thanos-query
//	    ports: ["9090", "10902:grpc", 8080]
//	    groups: [observability]
//	    health: {http: /-/ready, port: "9090"}   # HTTP GET through the tunnel
//	  - name: db
//	    statefulset: postgres
//	    ports: [{local: 15432, remote: 5432}]
//	    enabled: false
//	  - name: orders-db
//	    host: orders.db.internal.example.com   # through the relay
//	    ports: ["15433:5432"]
//	    relay: {namespace: kpf-relays}
//	  - name: dns
//	    service: kube-dns
//	    ports: ["5353:53/udp"]
//
// Every forward names exactly one target (service, pod, deployment,
// statefulset, selector or host) and at least one port mapping. A port
// mapping is "LOCAL:REMOTE", "PORT" (the same on both sides), an integer,
// or the long form {local: N, remote: N-or-name, protocol: tcp-or-udp}; the
// string forms take a "/udp" (or "/tcp") suffix. For a service target
// REMOTE is a service port; for a host a port number; for every other kind
// a container port. REMOTE may be a port name, except for a host.
//
// A host target ([Host]: a DNS name or an IP address as the cluster sees
// it), a UDP mapping (for service and host targets only), and a service
// that is ExternalName or has no pods are reached through a relay pod kpf
// runs; the relay field ([Relay]), in defaults and on each forward, says
// where and how. A forward's relay replaces the defaults' field by field.
//
// Parsing is strict: unknown fields, duplicate keys and wrong types are
// errors, and every problem in a file is reported at once, each with its
// FILE:LINE:COL position (see [Diagnostic] and [Error]). Anchors, aliases and
// << merge keys are supported; alias expansion is bounded so that a "billion
// laughs" document fails fast.
//
// Every forward has a [Health] check, probed through the tunnel: a TCP
// check by default, or an HTTP GET of a path (health.http). A forward's
// health field is merged field by field over defaults.health and the
// built-in defaults (interval 10s, timeout 5s, threshold 3, the first TCP
// port mapping's remote port). Probes are TCP: a forward with only UDP
// mappings is not probed.
//
// Defaults are applied once at load time, so a [Forward] is fully resolved;
// only Context == "" is left for the caller to read as the kubeconfig's
// current-context.
//
// An optional top-level proxy block ([Proxy]) declares a SOCKS5 and/or HTTP
// proxy through which clients reach the services of some namespaces by
// their cluster DNS names; its listen addresses must be loopback ones.
//
// A committed forwards.yaml is untrusted input: the format has no field for
// kubeconfig paths, commands or any other file path, and a non-loopback bind
// address needs an explicit allowNonLoopback: true.
package config
