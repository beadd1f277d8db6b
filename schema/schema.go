// Package schema holds the JSON Schema of forwards.yaml, format version 1,
// as kpf ships it inside its binary (`kpf schema` prints it). The schema's
// $id is stable: editors may fetch it from there, or use the printed copy.
package schema

import _ "embed"

// JSON is the schema document (JSON Schema draft 2020-12).
//
//go:embed forwards.schema.json
var JSON []byte

// ID is the schema's $id.
const ID = "https://raw.githubusercontent.com/kpf-dev/kpf/main/schema/forwards.schema.json"
