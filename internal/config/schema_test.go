package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

const schemaPath = "../../schema/forwards.schema.json"

// semanticOnly lists invalid fixtures whose problem a JSON Schema cannot
// express; the schema accepts them and only kpf validate rejects them.
var semanticOnly = []string{
	"derived-name-collision.yaml",
	"duplicate-local-port-udp.yaml",
	"duplicate-local-port.yaml",
	"duplicate-name.yaml",
	"duration-too-long.yaml",
	"group-name-clash.yaml",
	"health-bad-interval.yaml",
	"health-udp-only.yaml",
	"health-udp-port.yaml",
	"health-timeout.yaml",
	"health-unknown-port.yaml",
	"host-derived-name.yaml",
	"non-loopback-defaults.yaml",
	"non-loopback.yaml",
	"port-conflict-localhost.yaml",
	"port-conflict-udp.yaml",
	"port-conflict-wildcard.yaml",
	"port-conflict.yaml",
	"port-short-out-of-range.yaml",
	"port-zero.yaml",
	"proxy-port-clash.yaml",
	"relay-request-over-limit.yaml",
	"selector-invalid.yaml",
}

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("parse schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("forwards.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("forwards.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// yamlToJSON converts a YAML file into the value the schema validates.
func yamlToJSON(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

func TestSchemaAgreesWithFixtures(t *testing.T) {
	sch := compileSchema(t)
	for _, dir := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "config", dir, "*.yaml"))
		for _, file := range files {
			name := filepath.Base(file)
			t.Run(dir+"/"+name, func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				v, err := yamlToJSON(data)
				if err == nil {
					err = sch.Validate(v)
				}
				switch {
				case dir == "valid" && err != nil:
					t.Errorf("schema rejects a valid fixture: %v", err)
				case dir == "invalid" && slices.Contains(semanticOnly, name) && err != nil:
					t.Errorf("fixture listed as semantic-only, but the schema rejects it: %v", err)
				case dir == "invalid" && !slices.Contains(semanticOnly, name) && err == nil:
					t.Errorf("schema accepts an invalid fixture; fix the schema or list it in semanticOnly")
				}
			})
		}
	}
}

// TestSchemaFieldNames checks that the schema declares exactly the fields
// the parser accepts, mapping by mapping.
func TestSchemaFieldNames(t *testing.T) {
	data, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Properties map[string]json.RawMessage `json:"properties"`
		OneOf      []object                   `json:"oneOf"`
	}
	var schema struct {
		object
		Defs map[string]object `json:"$defs"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	port := schema.Defs["portMapping"].OneOf[2]
	for kind, props := range map[mappingKind]map[string]json.RawMessage{
		kindTop:            schema.Properties,
		kindDefaults:       schema.Defs["defaults"].Properties,
		kindForward:        schema.Defs["forward"].Properties,
		kindPort:           port.Properties,
		kindHealth:         schema.Defs["health"].Properties,
		kindDefaultsHealth: schema.Defs["defaultsHealth"].Properties,
		kindProxy:          schema.Defs["proxy"].Properties,
		kindRelay:          schema.Defs["relay"].Properties,
		kindToleration:     schema.Defs["toleration"].Properties,
		kindResources:      schema.Defs["resources"].Properties,
	} {
		var inSchema []string
		for name := range props {
			inSchema = append(inSchema, name)
		}
		slices.Sort(inSchema)
		inParser := slices.Sorted(slices.Values(fieldsOf(kind)))
		if !slices.Equal(inSchema, inParser) {
			t.Errorf("mapping %q: schema declares %v, parser accepts %v", kind, inSchema, inParser)
		}
	}
}

// TestSchemaSnippets checks the schema's rules one by one on small files,
// against what Parse says of the same file: for each, either both accept
// it or both reject it, unless semantic says only Parse can tell.
func TestSchemaSnippets(t *testing.T) {
	sch := compileSchema(t)
	const head = "version: 1\nforwards:\n  - "
	tests := []struct {
		name, src string
		valid     bool
		semantic  bool // only kpf validate rejects it
	}{
		{"host name", head + "{host: db.example.com, ports: [5432]}", true, false},
		{"host with a trailing dot", head + "{name: db, host: db.example.com., ports: [5432]}", true, false},
		{"host IPv4", head + "{host: 10.0.0.5, ports: [5432]}", true, false},
		{"host IPv6", head + "{name: db, host: 'fd00::5', ports: [5432]}", true, false},
		{"host uppercase", head + "{name: db, host: DB.example.com, ports: [5432]}", false, false},
		{"host not an IPv4 address", head + "{name: db, host: 10.0.0.256, ports: [5432]}", false, false},
		{"host with a zone", head + "{name: db, host: 'fe80::1%eth0', ports: [5432]}", false, false},
		{"host with a port", head + "{name: db, host: 'db.example.com:5432', ports: [5432]}", false, false},
		{"host and service", head + "{name: db, host: db.example.com, service: db, ports: [5432]}", false, false},
		{"host port name", head + "{name: db, host: db.example.com, ports: ['5432:pg']}", false, false},
		{"host port name, long form", head + "{name: db, host: db.example.com, ports: [{local: 5432, remote: pg}]}", false, false},
		{"host port number as a string", head + "{name: db, host: db.example.com, ports: [{local: 5432, remote: '5432'}]}", true, false},
		{"udp short forms", head + "{service: dns, ports: ['5353:53/udp', '54/udp', 'auto:55/udp', '5356:dns/udp', '5353:53/tcp']}", true, false},
		{"udp long form", head + "{service: dns, ports: [{local: 5353, remote: 53, protocol: udp}]}", true, false},
		{"unknown protocol", head + "{service: dns, ports: ['5353:53/sctp']}", false, false},
		{"unknown protocol, long form", head + "{service: dns, ports: [{local: 5353, remote: 53, protocol: UDP}]}", false, false},
		{"udp to a pod", head + "{pod: dns-0, ports: ['5353:53/udp']}", false, false},
		{"udp to a selector, long form", head + "{selector: app=dns, ports: [{local: 5353, remote: 53, protocol: udp}]}", false, false},
		{"tcp to a deployment", head + "{deployment: dns, ports: ['5353:53/tcp', {local: 5354, remote: 54, protocol: tcp}]}", true, false},
		{"health on a udp-only forward", head + "{service: dns, ports: ['5353:53/udp'], health: {tcp: true}}", false, true},
		{"relay", head + "{host: db.example.com, ports: [5432], relay: {image: 'r.example.com/relay:v1@sha256:00', namespace: relays, " +
			"nodeSelector: {kubernetes.io/os: linux, pool: ''}, tolerations: [{operator: Exists}, {key: a, value: b, effect: NoExecute, tolerationSeconds: 0}], " +
			"resources: {requests: {cpu: 0.01, memory: 16Mi}, limits: {cpu: 1, ephemeral-storage: 1Gi}}}}", true, false},
		{"relay in defaults", "version: 1\ndefaults:\n  relay: {namespace: relays}\nforwards: []", true, false},
		{"relay image with a space", head + "{host: db.example.com, ports: [5432], relay: {image: 'relay: v1'}}", false, false},
		{"relay namespace", head + "{host: db.example.com, ports: [5432], relay: {namespace: Relays}}", false, false},
		{"node label", head + "{host: db.example.com, ports: [5432], relay: {nodeSelector: {'-a': b}}}", false, false},
		{"node label value", head + "{host: db.example.com, ports: [5432], relay: {nodeSelector: {a: 'b c'}}}", false, false},
		{"node label value not a string", head + "{host: db.example.com, ports: [5432], relay: {nodeSelector: {a: true}}}", false, false},
		{"Exists with a value", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{key: a, operator: Exists, value: b}]}}", false, false},
		{"no key without Exists", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{effect: NoSchedule}]}}", false, false},
		{"empty key without Exists", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{key: '', operator: Equal}]}}", false, false},
		{"tolerationSeconds without NoExecute", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{key: a, effect: NoSchedule, tolerationSeconds: 1}]}}", false, false},
		{"negative tolerationSeconds", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{key: a, effect: NoExecute, tolerationSeconds: -1}]}}", false, false},
		{"unknown effect", head + "{host: db.example.com, ports: [5432], relay: {tolerations: [{key: a, effect: NoSchedul}]}}", false, false},
		{"unknown resource", head + "{host: db.example.com, ports: [5432], relay: {resources: {requests: {gpu: 1}}}}", false, false},
		{"bad quantity", head + "{host: db.example.com, ports: [5432], relay: {resources: {requests: {memory: 16mi}}}}", false, false},
		{"zero quantity", head + "{host: db.example.com, ports: [5432], relay: {resources: {limits: {cpu: '0.0'}}}}", false, false},
		{"zero number", head + "{host: db.example.com, ports: [5432], relay: {resources: {limits: {cpu: 0}}}}", false, false},
		{"empty requests", head + "{host: db.example.com, ports: [5432], relay: {resources: {requests: {}}}}", false, false},
		{"request over limit", head + "{host: db.example.com, ports: [5432], relay: {resources: {requests: {cpu: 2}, limits: {cpu: 1}}}}", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := []byte(tt.src + "\n")
			_, _, perr := Parse("f.yaml", src)
			if (perr == nil) != tt.valid {
				t.Fatalf("Parse: got %v, want valid %v", perr, tt.valid)
			}
			v, err := yamlToJSON(src)
			if err != nil {
				t.Fatal(err)
			}
			serr := sch.Validate(v)
			if want := tt.valid || tt.semantic; (serr == nil) != want {
				t.Errorf("schema: got %v, want valid %v", serr, want)
			}
		})
	}
}
