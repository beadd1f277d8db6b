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
