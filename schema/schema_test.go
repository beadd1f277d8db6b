package schema

import (
	"encoding/json"
	"testing"
)

func TestIDIsTheDocumentsID(t *testing.T) {
	var doc struct {
		ID     string `json:"$id"`
		Schema string `json:"$schema"`
	}
	if err := json.Unmarshal(JSON, &doc); err != nil {
		t.Fatalf("the embedded schema is not JSON: %v", err)
	}
	if doc.ID != ID {
		t.Errorf("$id is %q, ID is %q", doc.ID, ID)
	}
	if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema is %q, want draft 2020-12", doc.Schema)
	}
}
