package appenv

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Formats are the names Write knows.
var Formats = []string{"shell", "dotenv", "json"}

// Write writes vars in format: "shell" (export lines for eval), "dotenv"
// (NAME=value lines that a POSIX shell can also source, as with
// `set -a; . ./.env`) or "json" (one object).
func Write(w io.Writer, format string, vars []Var) error {
	var b strings.Builder
	switch format {
	case "shell":
		for _, v := range vars {
			fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
		}
	case "dotenv":
		for _, v := range vars {
			fmt.Fprintf(&b, "%s=%s\n", v.Name, dotenvValue(v.Value))
		}
	case "json":
		m := make(map[string]string, len(vars))
		for _, v := range vars {
			m[v.Name] = v.Value
		}
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		b.Write(out)
		b.WriteByte('\n')
	default:
		return fmt.Errorf("unknown format %q (want %s)", format, strings.Join(Formats, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shellQuote quotes s for a POSIX shell: in single quotes, a single
// quote written as '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// dotenvValue is s as a dotenv value: bare when it is made only of
// characters every dotenv reader and a shell take literally, else in
// single quotes (which dotenv readers take literally too). A value with a
// single quote or a newline is shell-quoted; few dotenv readers read that
// back, so env values should avoid them.
func dotenvValue(s string) string {
	bare := s != ""
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("_-.:/@%+,=", r):
		default:
			bare = false
		}
	}
	if bare {
		return s
	}
	return shellQuote(s)
}
