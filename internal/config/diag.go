package config

import (
	"cmp"
	"slices"
	"strings"
)

// Severity tells an error from a warning.
type Severity int

// The severities. A config with any SeverityError diagnostic is rejected.
const (
	SeverityError Severity = iota
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Diagnostic is one problem found in a config file.
type Diagnostic struct {
	// Pos is where the problem is; Pos.File is the path as the user gave it.
	Pos Position
	// Path is the value's place in the document, e.g. "forwards[2].ports[0]";
	// empty for problems with the document as a whole.
	Path string
	// Message says what is wrong: lowercase, no trailing period.
	Message string
	// Hint, if not empty, says how to fix it.
	Hint     string
	Severity Severity
}

// String formats d as
//
//	FILE:LINE:COL: PATH: message
//		hint: hint
//
// with "warning: " after the position for warnings. The hint line is left
// out when there is no hint, and "PATH: " when there is no path.
func (d Diagnostic) String() string {
	var b strings.Builder
	b.WriteString(d.Pos.String())
	b.WriteString(": ")
	if d.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if d.Path != "" {
		b.WriteString(d.Path)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	if d.Hint != "" {
		b.WriteString("\n\thint: ")
		b.WriteString(d.Hint)
	}
	return b.String()
}

// Error is returned for a config with errors. It holds every diagnostic
// found, warnings included, sorted by position.
type Error struct {
	Diagnostics []Diagnostic
}

// Error returns one diagnostic per line (plus hint lines).
func (e *Error) Error() string {
	lines := make([]string, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// sortDiagnostics orders ds by position, keeping the order of diagnostics at
// the same position.
func sortDiagnostics(ds []Diagnostic) {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
}

// hasErrors reports whether ds holds at least one error.
func hasErrors(ds []Diagnostic) bool {
	return slices.ContainsFunc(ds, func(d Diagnostic) bool { return d.Severity == SeverityError })
}

// warnings returns the warnings in ds.
func warnings(ds []Diagnostic) []Diagnostic {
	var out []Diagnostic
	for _, d := range ds {
		if d.Severity == SeverityWarning {
			out = append(out, d)
		}
	}
	return out
}
