package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kpf-dev/kpf/internal/appenv"
	"github.com/kpf-dev/kpf/internal/suggest"
)

// maxVisits bounds how many nodes the parser visits beyond the nodes the
// document holds, that is while expanding aliases and merge keys, so that
// an alias bomb fails fast instead of eating time and memory. A document
// without aliases never reaches it, however large.
const maxVisits = 100_000

// maxMergeDepth bounds how deeply << merge keys may nest.
const maxMergeDepth = 32

// Load reads the forwards.yaml at path and parses it with Parse. Errors
// reading the file are returned as they are; problems in the file as *Error.
func Load(path string) (*Config, []Diagnostic, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(path, data)
}

// readFile reads at most MaxFileSize+1 bytes of path, enough for Parse to
// tell that a file is too large.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a forwards.yaml (name the file, e.g. %s)", path, filepath.Join(path, "forwards.yaml"))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		// os.File's errors name the path already.
		return nil, err
	}
	return data, nil
}

// Parse parses and validates a forwards.yaml; file is used in positions
// only. It returns the resolved config and its warnings, or, if there is any
// error, nil and an *Error holding every diagnostic (warnings included),
// sorted by position.
func Parse(file string, data []byte) (*Config, []Diagnostic, error) {
	d := &decoder{file: file, data: data, pos: map[string]Position{}, bad: map[string]bool{}}
	cfg := d.document(data)
	if cfg != nil && !d.exhausted {
		d.diags = append(d.diags, validate(cfg, d.bad)...)
	}
	sortDiagnostics(d.diags)
	if cfg == nil || hasErrors(d.diags) {
		return nil, nil, &Error{Diagnostics: d.diags}
	}
	return cfg, warnings(d.diags), nil
}

// decoder walks a yaml.Node tree by hand, which keeps positions for every
// value and keeps decoding strict.
type decoder struct {
	file  string
	data  []byte // the file's bytes, for syntax errors' columns
	diags []Diagnostic
	// visits counts nodes visited; budget is the document's own node
	// count plus maxVisits.
	visits    int
	budget    int
	exhausted bool
	// pos records where each value path was written.
	pos map[string]Position
	// bad marks value paths that failed to decode, so validation skips them.
	bad map[string]bool
}

// field is one key/value pair of a mapping.
type field struct {
	key, val *yaml.Node
}

func (d *decoder) at(n *yaml.Node) Position {
	return Position{File: d.file, Line: n.Line, Col: n.Column}
}

// reportAt reports a problem with the value at path, which must have been
// visited already.
func (d *decoder) reportAt(path, msg, hint string) {
	d.bad[path] = true
	d.diags = append(d.diags, Diagnostic{Pos: d.pos[path], Path: path, Message: msg, Hint: hint})
}

func (d *decoder) report(n *yaml.Node, path, msg, hint string) {
	d.diags = append(d.diags, Diagnostic{Pos: d.at(n), Path: path, Message: msg, Hint: hint})
}

// yamlLine finds the line number in yaml.v3's error text.
var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// syntaxError turns a yaml.v3 error into a diagnostic.
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	diag := Diagnostic{Pos: Position{File: d.file, Line: line, Col: 1}, Message: "invalid YAML: " + msg}
	// yaml.v3 often names the line before the one holding the tab.
	for l := line; l <= line+1; l++ {
		col := tabColumn(d.data, l)
		if col == 0 {
			continue
		}
		diag.Pos.Line, diag.Pos.Col = l, col
		if !strings.Contains(msg, "tab") {
			diag.Message += " (a tab)"
		}
		diag.Hint = "YAML indents with spaces only: replace the tab with spaces"
		break
	}
	d.diags = append(d.diags, diag)
}

// tabColumn returns the 1-based column of the first tab in the leading
// whitespace of line (1-based) of data, or 0 if there is none: a tab
// there is what YAML's "found character that cannot start any token"
// most often means.
func tabColumn(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return 0
	}
	for i, c := range lines[line-1] {
		switch c {
		case '\t':
			return i + 1
		case ' ':
		default:
			return 0
		}
	}
	return 0
}

// document decodes the whole file; nil means nothing could be decoded.
func (d *decoder) document(data []byte) *Config {
	if len(data) > MaxFileSize {
		d.diags = append(d.diags, Diagnostic{
			Pos:     Position{File: d.file, Line: 1, Col: 1},
			Message: fmt.Sprintf("file is larger than the limit of %d bytes (1 MiB); kpf did not parse it", MaxFileSize),
			Hint:    "a forwards.yaml of a thousand forwards is about 150 KiB: is this the right file?",
		})
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if err != nil && !errors.Is(err, io.EOF) {
		d.syntaxError(err)
		return nil
	}
	if err != nil || len(doc.Content) == 0 {
		d.diags = append(d.diags, Diagnostic{
			Pos:     Position{File: d.file, Line: 1, Col: 1},
			Message: "empty file",
			Hint:    "start it with a line `version: 1`",
		})
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntaxError(err)
		return nil
	default:
		d.report(&extra, "", "more than one YAML document", "keep everything in one document (remove the `---` line)")
		return nil
	}
	d.budget = countNodes(&doc) + maxVisits
	return d.top(doc.Content[0])
}

// countNodes counts the nodes of a document as written, without following
// aliases.
func countNodes(root *yaml.Node) int {
	n := 0
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		stack = append(stack, top.Content...)
	}
	return n
}

// deref follows aliases, counting every node visited; it returns nil once
// the visit budget is spent.
func (d *decoder) deref(n *yaml.Node) *yaml.Node {
	for {
		if d.exhausted {
			return nil
		}
		d.visits++
		if d.visits > d.budget {
			d.exhausted = true
			d.report(n, "", fmt.Sprintf("document too complex: following its aliases and merge keys visits more than %d values", maxVisits),
				"a forwards.yaml needs a few anchors at most; nested aliases that multiply like these make an alias bomb")
			return nil
		}
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
}

// value dereferences the value at path and records its position.
func (d *decoder) value(path string, raw *yaml.Node) *yaml.Node {
	n := d.deref(raw)
	if n == nil {
		d.bad[path] = true
		return nil
	}
	d.pos[path] = d.at(n)
	return n
}

// describe names the type of n for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		default:
			return "a value tagged " + t
		}
	}
	return "nothing"
}

func (d *decoder) typeError(n *yaml.Node, path, want string) {
	d.bad[path] = true
	d.report(n, path, fmt.Sprintf("expected %s, got %s", want, describe(n)), "")
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// fields returns the fields of the mapping n by name, with << merge keys
// resolved (keys written in a mapping win over merged ones, earlier merges
// over later ones). It reports unknown, duplicate and non-string keys.
func (d *decoder) fields(path string, n *yaml.Node, kind mappingKind) map[string]field {
	out := map[string]field{}
	d.collect(path, n, kind, out, 0)
	return out
}

func (d *decoder) collect(path string, n *yaml.Node, kind mappingKind, out map[string]field, depth int) {
	allowed := fieldsOf(kind)
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.deref(n.Content[i])
		if k == nil {
			return
		}
		if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
			d.report(k, path, "expected a field name, got "+describe(k), "")
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, n.Content[i+1])
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			d.report(k, join(path, name), fmt.Sprintf("duplicate key %q", name), "first at "+d.at(first).String())
			continue
		}
		seen[name] = k
		if kind == kindTop && strings.HasPrefix(name, "x-") {
			continue // extension fields, a place for anchors
		}
		if !slices.Contains(allowed, name) {
			hint := forbiddenHint(name)
			if hint == "" {
				if s := suggest.Closest(name, allowed); s != "" {
					hint = fmt.Sprintf("did you mean %q?", s)
					// The field is most likely written, under a wrong
					// name: validation must not also say it is missing.
					d.bad[join(path, s)] = true
				} else if kind == kindDefaultsHealth && name == fPort {
					hint = "the probed port is per forward: set health.port on the forwards that need it"
				}
			}
			d.report(k, join(path, name), fmt.Sprintf("unknown field %q", name), hint)
			continue
		}
		if _, ok := out[name]; !ok {
			out[name] = field{key: k, val: n.Content[i+1]}
		}
	}
	for _, raw := range merges {
		m := d.deref(raw)
		if m == nil {
			return
		}
		if depth >= maxMergeDepth {
			d.report(m, path, "merge keys nested too deeply", "")
			return
		}
		switch m.Kind {
		case yaml.MappingNode:
			d.collect(path, m, kind, out, depth+1)
		case yaml.SequenceNode:
			for _, item := range m.Content {
				mi := d.deref(item)
				if mi == nil {
					return
				}
				if mi.Kind != yaml.MappingNode {
					d.report(mi, path, "expected a mapping to merge, got "+describe(mi), "")
					continue
				}
				d.collect(path, mi, kind, out, depth+1)
			}
		default:
			d.report(m, path, "expected a mapping or a list of mappings to merge, got "+describe(m), "")
		}
	}
}

// forbiddenHint explains why a field that would let the file choose files,
// commands or credentials does not exist, or returns "" for other names.
// A forwards.yaml is untrusted input: running kpf up with one must never
// run a command, read a file or use credentials it supplies.
func forbiddenHint(name string) string {
	switch strings.ToLower(strings.NewReplacer("_", "-").Replace(name)) {
	case "kubeconfig", "exec", "command", "cmd", "args", "env", "script", "shell", "run",
		"file", "path", "include", "import":
		return "forwards.yaml cannot name files or commands; use --kubeconfig or $KUBECONFIG"
	case "token", "token-file", "tokenfile", "client-certificate", "client-certificate-data", "clientcertificate",
		"client-key", "client-key-data", "clientkey", "certificate-authority", "certificate-authority-data",
		"username", "password", "auth-provider", "authprovider", "user", "cluster", "server",
		"insecure-skip-tls-verify", "as", "impersonate", "credentials":
		return "forwards.yaml names a context only; servers and credentials come from your kubeconfig"
	}
	return ""
}

// looksLikePath reports whether a context name is written like a file path.
func looksLikePath(s string) bool {
	return strings.HasPrefix(s, "/") || strings.HasPrefix(s, "./") || strings.HasPrefix(s, "../") ||
		strings.HasPrefix(s, "~") || strings.HasPrefix(s, `\`) || len(s) > 2 && s[1] == ':' && (s[2] == '\\' || s[2] == '/')
}

func (d *decoder) str(path string, raw *yaml.Node) (string, bool) {
	n := d.value(path, raw)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		d.typeError(n, path, "a string")
		return "", false
	}
	return n.Value, true
}

func (d *decoder) boolean(path string, raw *yaml.Node) (bool, bool) {
	n := d.value(path, raw)
	if n == nil {
		return false, false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		d.typeError(n, path, "true or false")
		return false, false
	}
	b, err := strconv.ParseBool(n.Value)
	if err != nil {
		// yaml.v3 also tags YAML 1.1 spellings such as "yes" as booleans
		// in some positions; accept only the YAML 1.2 ones.
		d.typeError(n, path, "true or false")
		return false, false
	}
	return b, true
}

// parseInt parses the text of a YAML integer.
func parseInt(s string) (int64, bool) {
	v, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	return v, err == nil
}

func (d *decoder) integer(path string, raw *yaml.Node) (int64, bool) {
	n := d.value(path, raw)
	if n == nil {
		return 0, false
	}
	v, ok := parseInt(n.Value)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || !ok {
		d.typeError(n, path, "an integer")
		return 0, false
	}
	return v, true
}

// list returns the items of the list at path; false (reported, unless
// the value is absent or null) when there is none.
func (d *decoder) list(path string, raw *yaml.Node) ([]*yaml.Node, bool) {
	n := d.value(path, raw)
	if n == nil {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.typeError(n, path, "a list")
		return nil, false
	}
	return n.Content, true
}

// env decodes a forward's env: a mapping of variable names to templates
// over appenv.Fields. A name that is not a variable's, or takes the KPF_
// prefix kpf's own variables use, is reported at the key; a template that
// does not parse or names an unknown field, at its value.
func (d *decoder) env(path string, raw *yaml.Node) map[string]string {
	n := d.value(path, raw)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping of variable names to values")
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.deref(n.Content[i])
		if k == nil {
			return out
		}
		name := k.Value
		p := join(path, name)
		switch {
		case k.Kind != yaml.ScalarNode || !appenv.ValidName(name):
			d.report(k, p, fmt.Sprintf("invalid variable name %q", name), "use letters, digits and _, not starting with a digit")
			continue
		case strings.HasPrefix(strings.ToUpper(name), "KPF_"):
			d.report(k, p, fmt.Sprintf("variable %s takes the KPF_ prefix of kpf's own variables", name), "name it without KPF_")
			continue
		}
		if _, dup := out[name]; dup {
			d.report(k, p, fmt.Sprintf("duplicate variable %q", name), "")
			continue
		}
		text, ok := d.str(p, n.Content[i+1])
		if !ok {
			continue
		}
		if err := appenv.Check(text); err != nil {
			d.report(d.deref(n.Content[i+1]), p, err.Error(), "")
			continue
		}
		out[name] = text
	}
	return out
}

// stringList decodes a list of strings.
func (d *decoder) stringList(path string, raw *yaml.Node) []string {
	items, ok := d.list(path, raw)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(items))
	for j, item := range items {
		if s, ok := d.str(fmt.Sprintf("%s[%d]", path, j), item); ok {
			out = append(out, s)
		}
	}
	return out
}

// alignedStrings decodes a list of strings, keeping an item that fails to
// decode as "" (marked bad) so that indexes stay aligned with paths. A value
// that is not a list yields an empty, non-nil list.
func (d *decoder) alignedStrings(path string, raw *yaml.Node) []string {
	items, ok := d.list(path, raw)
	if !ok {
		return []string{}
	}
	out := make([]string, len(items))
	for j, item := range items {
		out[j], _ = d.str(fmt.Sprintf("%s[%d]", path, j), item)
	}
	return out
}

// top decodes the top-level mapping.
func (d *decoder) top(n *yaml.Node) *Config {
	cfg := &Config{
		File: d.file,
		Defaults: Defaults{
			Namespace:    DefaultNamespace,
			Address:      DefaultAddress,
			WaitForReady: DefaultWaitForReady,
			Balance:      DefaultBalance,
			Health:       defaultHealth,
		},
		pos: d.pos,
	}
	n = d.value("", n)
	if n == nil {
		return cfg
	}
	if n.Kind != yaml.MappingNode {
		d.report(n, "", "expected a mapping with version, defaults and forwards, got "+describe(n), "")
		return nil
	}
	fs := d.fields("", n, kindTop)
	if f, ok := fs[fVersion]; ok {
		if v, ok := d.integer(fVersion, f.val); ok {
			cfg.Version = int(max(min(v, 1<<31), -1<<31))
		}
	}
	if f, ok := fs[fDefaults]; ok {
		if m := d.value(fDefaults, f.val); m != nil {
			if m.Kind != yaml.MappingNode {
				d.typeError(m, fDefaults, "a mapping")
			} else {
				df := d.fields(fDefaults, m, kindDefaults)
				d.common(fDefaults, df, &cfg.Defaults.Context, &cfg.Defaults.Namespace,
					&cfg.Defaults.Address, &cfg.Defaults.WaitForReady, &cfg.Defaults.Balance, &cfg.Defaults.Spare)
				if hf, ok := df[fHealth]; ok {
					d.health(join(fDefaults, fHealth), hf.val, kindDefaultsHealth, &cfg.Defaults.Health)
				}
				if rf, ok := df[fRelay]; ok {
					d.relay(join(fDefaults, fRelay), rf.val, &cfg.Defaults.Relay)
				}
			}
		}
	}
	if f, ok := fs[fForwards]; ok {
		if m := d.value(fForwards, f.val); m != nil {
			if m.Kind != yaml.SequenceNode {
				d.typeError(m, fForwards, "a list")
			} else {
				for i, item := range m.Content {
					if d.exhausted {
						break
					}
					cfg.Forwards = append(cfg.Forwards, d.forward(i, item, cfg.Defaults))
				}
			}
		}
	}
	if f, ok := fs[fProxy]; ok {
		cfg.Proxy = d.proxy(f.val, cfg.Forwards)
	}
	return cfg
}

// proxy decodes the proxy block; forwards supply the default namespaces
// and contexts. It returns nil only when the block is not a mapping.
func (d *decoder) proxy(raw *yaml.Node, forwards []Forward) *Proxy {
	n := d.value(fProxy, raw)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, fProxy, "a mapping")
		return nil
	}
	p := &Proxy{Pos: d.at(n)}
	fs := d.fields(fProxy, n, kindProxy)
	for _, a := range []struct {
		field string
		addr  *string
	}{{fSOCKS5, &p.SOCKS5}, {fHTTP, &p.HTTP}} {
		f, ok := fs[a.field]
		if !ok {
			continue
		}
		path := join(fProxy, a.field)
		s, ok := d.str(path, f.val)
		if !ok {
			continue
		}
		ap, err := parseListenAddr(s)
		if err != nil {
			d.reportAt(path, err.Error(), "write a loopback address and a port, such as 127.0.0.1:1080")
			continue
		}
		*a.addr = ap.String()
	}
	if f, ok := fs[fNamespaces]; ok {
		p.Namespaces = d.alignedStrings(join(fProxy, fNamespaces), f.val)
	} else {
		for _, fw := range forwards {
			if fw.Enabled && fw.Namespace != "" && !slices.Contains(p.Namespaces, fw.Namespace) {
				p.Namespaces = append(p.Namespaces, fw.Namespace)
			}
		}
	}
	if f, ok := fs[fContexts]; ok {
		p.Contexts = d.alignedStrings(join(fProxy, fContexts), f.val)
	} else {
		for _, fw := range forwards {
			if fw.Enabled && !slices.Contains(p.Contexts, fw.Context) {
				p.Contexts = append(p.Contexts, fw.Context)
			}
		}
	}
	return p
}

// parseListenAddr parses a proxy listen address, "HOST:PORT" with HOST an
// IP address or localhost and PORT in 1-65535. It does not check that the
// address is a loopback one.
func parseListenAddr(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: want HOST:PORT", s)
	}
	h, err := normalizeAddress(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: want an IP address or localhost before the port", s)
	}
	if h == Localhost {
		h = "127.0.0.1" // a proxy listens on one address
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || !allDigits(port) {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: port %q is not in range 1-65535", s, port)
	}
	return netip.AddrPortFrom(netip.MustParseAddr(h), uint16(n)), nil
}

// common decodes the fields shared by defaults and forwards into the given
// places, leaving them alone when a field is absent or bad.
func (d *decoder) common(path string, fs map[string]field, ctx, ns, addr *string, wait *time.Duration, bal *Balance, spare *int) {
	if f, ok := fs[fContext]; ok {
		p := join(path, fContext)
		if s, ok := d.str(p, f.val); ok {
			if s == "" {
				d.reportAt(p, "context must not be empty", "leave context out to use the kubeconfig's current-context")
			} else if looksLikePath(s) {
				d.reportAt(p, fmt.Sprintf("context %q is a file path: forwards.yaml names a context of your kubeconfig, never a file", s),
					"choose the kubeconfig with --kubeconfig or $KUBECONFIG, and name one of its contexts here")
			} else {
				*ctx = s
			}
		}
	}
	if f, ok := fs[fNamespace]; ok {
		if s, ok := d.str(join(path, fNamespace), f.val); ok {
			*ns = s
		}
	}
	if f, ok := fs[fAddress]; ok {
		p := join(path, fAddress)
		if s, ok := d.str(p, f.val); ok {
			a, err := normalizeAddress(s)
			if err != nil {
				d.reportAt(p, fmt.Sprintf("invalid address %q: want an IP address or localhost", s), "")
			} else {
				*addr = a
			}
		}
	}
	if f, ok := fs[fWaitForReady]; ok {
		if w, ok := d.duration(join(path, fWaitForReady), f.val); ok {
			*wait = w
		}
	}
	if f, ok := fs[fBalance]; ok {
		if s, ok := d.str(join(path, fBalance), f.val); ok {
			*bal = Balance(s)
		}
	}
	if f, ok := fs[fSpare]; ok {
		if v, ok := d.integer(join(path, fSpare), f.val); ok {
			*spare = int(max(min(v, 1<<31), -1<<31))
		}
	}
}

// duration decodes a Go duration written as a string.
func (d *decoder) duration(path string, raw *yaml.Node) (time.Duration, bool) {
	if n := d.value(path, raw); n != nil && n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		d.bad[path] = true
		d.report(n, path, fmt.Sprintf("expected a duration, got the number %s", n.Value),
			fmt.Sprintf("write it with its unit, as a string: %q", n.Value+"s"))
		return 0, false
	}
	s, ok := d.str(path, raw)
	if !ok {
		return 0, false
	}
	w, err := time.ParseDuration(s)
	if err != nil {
		d.reportAt(path, fmt.Sprintf("invalid duration %q", s), `use a Go duration such as "30s" or "2m"`)
		return 0, false
	}
	return w, true
}

// health decodes a health mapping of the given kind over h, which holds the
// inherited values: every field written replaces the inherited one, except
// that tcp and http together choose the kind of check, so writing either
// replaces the inherited kind as a whole.
func (d *decoder) health(path string, raw *yaml.Node, kind mappingKind, h *Health) {
	n := d.value(path, raw)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return
	}
	fs := d.fields(path, n, kind)

	tf, hasTCP := fs[fTCP]
	tcp, tcpOK := false, false
	if hasTCP {
		tcp, tcpOK = d.boolean(join(path, fTCP), tf.val)
	}
	hp := join(path, fHTTP)
	if hf, ok := fs[fHTTP]; ok {
		if s, ok := d.str(hp, hf.val); ok {
			switch {
			case tcpOK && tcp:
				d.report(tf.key, join(path, fTCP), "tcp and http are mutually exclusive",
					"remove `tcp: true` to probe with an HTTP GET, or remove http to probe with TCP")
				d.bad[join(path, fTCP)] = true
			case s == "":
				d.reportAt(hp, "http must not be empty", `write the path to GET, such as "/healthz"`)
			default:
				h.HTTPPath = s
			}
		}
	} else if tcpOK {
		if tcp {
			h.HTTPPath = ""
		} else {
			d.report(tf.key, join(path, fTCP), "tcp: false leaves no health check",
				"remove health to use the default TCP check, or set http: /PATH")
			d.bad[join(path, fTCP)] = true
		}
	}

	if f, ok := fs[fPort]; ok {
		if p, ok := d.remote(join(path, fPort), f.val); ok {
			h.Port = p
		}
	}
	if f, ok := fs[fInterval]; ok {
		if w, ok := d.duration(join(path, fInterval), f.val); ok {
			h.Interval = w
		}
	}
	if f, ok := fs[fTimeout]; ok {
		if w, ok := d.duration(join(path, fTimeout), f.val); ok {
			h.Timeout = w
		}
	}
	if f, ok := fs[fThreshold]; ok {
		if v, ok := d.integer(join(path, fThreshold), f.val); ok {
			h.Threshold = int(max(min(v, 1<<31), -1<<31))
		}
	}
}

// normalizeAddress parses an IP literal or "localhost" into the canonical
// IP string, or "localhost".
func normalizeAddress(s string) (string, error) {
	if s == Localhost {
		return Localhost, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", err
	}
	if a.Zone() != "" {
		return "", errors.New("zones are not supported")
	}
	return a.Unmap().String(), nil
}

// normalizeHost returns a host target as kpf keeps it: an IP address in
// its canonical form (an IPv4-mapped IPv6 address as IPv4), a DNS name
// without the trailing dot of a fully qualified name. Anything else is
// returned as written, for validation to report.
func normalizeHost(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return s
		}
		return a.Unmap().String()
	}
	if len(s) > 1 && strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "..") {
		return s[:len(s)-1]
	}
	return s
}

// target decodes a forward's one target field (service, pod, ...),
// reporting a second one.
func (d *decoder) target(path string, fs map[string]field) Target {
	var target Target
	var first field
	for _, t := range targetFields {
		tf, ok := fs[t.field]
		if !ok {
			continue
		}
		p := join(path, t.field)
		if target.Kind != 0 {
			d.report(tf.key, p, fmt.Sprintf("more than one target: %s and %s", first.key.Value, t.field),
				"a forward has exactly one of "+targetList)
			continue
		}
		s, ok := d.str(p, tf.val)
		if !ok {
			d.bad[join(path, "target")] = true
			continue
		}
		first = tf
		target.Kind = t.kind
		switch t.kind {
		case Selector:
			target.Selector = s
			if sel, err := labels.Parse(s); err == nil && !sel.Empty() {
				target.Selector = sel.String()
			}
		case Host:
			target.Name = normalizeHost(s)
		default:
			target.Name = s
		}
	}
	return target
}

// forward decodes forwards[i], starting from the defaults.
func (d *decoder) forward(i int, raw *yaml.Node, defs Defaults) Forward {
	path := fmt.Sprintf("%s[%d]", fForwards, i)
	f := Forward{
		Context:      defs.Context,
		Namespace:    defs.Namespace,
		Address:      defs.Address,
		Balance:      defs.Balance,
		WaitForReady: defs.WaitForReady,
		Spare:        defs.Spare,
		Health:       defs.Health,
		Relay:        defs.Relay.clone(),
		Enabled:      true,
	}
	n := d.value(path, raw)
	if n == nil {
		return f
	}
	f.Pos = d.at(n)
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return f
	}
	fs := d.fields(path, n, kindForward)
	d.common(path, fs, &f.Context, &f.Namespace, &f.Address, &f.WaitForReady, &f.Balance, &f.Spare)

	f.Target = d.target(path, fs)
	if tf, ok := fs[fName]; ok {
		if s, ok := d.str(join(path, fName), tf.val); ok {
			f.Name = s
		}
	} else {
		f.Name = deriveName(f.Target)
	}
	if tf, ok := fs[fPorts]; ok {
		f.Ports = d.ports(join(path, fPorts), tf.val)
	}
	// Health checks probe TCP: the default port is the first TCP
	// mapping's; a forward with only UDP mappings is not probed.
	if i := slices.IndexFunc(f.Ports, func(pm PortMapping) bool { return pm.Protocol == TCP }); i >= 0 {
		f.Health.Port = f.Ports[i].Remote
	}
	if tf, ok := fs[fHealth]; ok {
		d.health(join(path, fHealth), tf.val, kindHealth, &f.Health)
	}
	if tf, ok := fs[fGroups]; ok {
		f.Groups = d.stringList(join(path, fGroups), tf.val)
	}
	if tf, ok := fs[fEnv]; ok {
		f.Env = d.env(join(path, fEnv), tf.val)
	}
	if tf, ok := fs[fRelay]; ok {
		d.relay(join(path, fRelay), tf.val, &f.Relay)
	}
	if tf, ok := fs[fEnabled]; ok {
		if b, ok := d.boolean(join(path, fEnabled), tf.val); ok {
			f.Enabled = b
		}
	}
	if tf, ok := fs[fAllowNonLoopback]; ok {
		if b, ok := d.boolean(join(path, fAllowNonLoopback), tf.val); ok {
			f.AllowNonLoopback = b
		}
	}
	return f
}

// deriveName returns the default name of a forward to t: the target's name
// (a host's name or address), or for a selector its text with every run of other characters replaced by
// "-".
func deriveName(t Target) string {
	s := t.Name
	if t.Kind == Selector {
		var b strings.Builder
		dash := false
		for _, r := range strings.ToLower(t.Selector) {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' {
				b.WriteRune(r)
				dash = false
			} else if !dash {
				b.WriteByte('-')
				dash = true
			}
		}
		s = b.String()
	}
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-._")
}

// ports decodes a list of port mappings. Entries that fail to decode are
// kept as zero placeholders marked bad, so indexes stay aligned with paths.
func (d *decoder) ports(path string, raw *yaml.Node) []PortMapping {
	items, ok := d.list(path, raw)
	if !ok {
		return nil
	}
	out := make([]PortMapping, 0, len(items))
	for j, item := range items {
		p := fmt.Sprintf("%s[%d]", path, j)
		pm, ok := d.port(p, item)
		if !ok {
			d.bad[p] = true
		}
		out = append(out, pm)
	}
	return out
}

const portForms = `a port number, "LOCAL:REMOTE", "auto:REMOTE", "PORT" (each with /udp for UDP), or {local: N or auto, remote: N or name, protocol: tcp or udp}`

// autoPort is the local port kpf picks: "auto:5432", {local: auto}.
const autoPort = "auto"

// isAuto reports whether n is the scalar auto.
func isAuto(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.ScalarNode && n.Value == autoPort
}

// port decodes one port mapping in any of its forms.
func (d *decoder) port(path string, raw *yaml.Node) (PortMapping, bool) {
	n := d.value(path, raw)
	if n == nil {
		return PortMapping{}, false
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
		v, ok := d.portNumber(path, n, n.Value)
		return PortMapping{Local: v, Remote: Port{Number: v}}, ok
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str":
		return d.shortPort(path, n)
	case n.Kind == yaml.MappingNode:
		fs := d.fields(path, n, kindPort)
		var pm PortMapping
		ok := true
		lf, has := fs[fLocal]
		if has && isAuto(d.deref(lf.val)) {
			pm.Auto = true
		} else if !has {
			d.report(n, path, "missing local port", "write {local: N, remote: N or name}")
			ok = false
		} else if v, good := d.integer(join(path, fLocal), lf.val); !good {
			ok = false
		} else if v < 0 || v > 65535 {
			d.reportAt(join(path, fLocal), fmt.Sprintf("port %d is out of range 1-65535", v), "")
			ok = false
		} else {
			pm.Local = uint16(v)
		}
		if pf, has := fs[fProtocol]; has {
			pp := join(path, fProtocol)
			if s, good := d.str(pp, pf.val); !good {
				ok = false
			} else if proto, good := parseProtocol(s); !good {
				d.reportAt(pp, fmt.Sprintf("unknown protocol %q", s), protocolHint(s, strconv.Quote))
				ok = false
			} else {
				pm.Protocol = proto
			}
		}
		rf, has := fs[fRemote]
		if !has {
			d.report(n, path, "missing remote port", "write {local: N, remote: N or name}")
			return pm, false
		}
		r, good := d.remote(join(path, fRemote), rf.val)
		pm.Remote = r
		return pm, ok && good
	}
	d.typeError(n, path, portForms)
	return PortMapping{}, false
}

// remote decodes a remote port: a number, a number written as a string, or
// a name.
func (d *decoder) remote(path string, raw *yaml.Node) (Port, bool) {
	r := d.value(path, raw)
	if r == nil {
		return Port{}, false
	}
	switch {
	case r.Kind == yaml.ScalarNode && r.ShortTag() == "!!int",
		r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str" && r.Value != "" && allDigits(r.Value):
		v, ok := d.portNumber(path, r, r.Value)
		return Port{Number: v}, ok
	case r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str":
		if r.Value == "" {
			d.bad[path] = true
			d.report(r, path, "remote port must not be empty", "")
			return Port{}, false
		}
		return Port{Name: r.Value}, true
	}
	d.typeError(r, path, "a port number or name")
	return Port{}, false
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// portNumber parses a port number, reporting one outside 0-65535. Zero is
// returned as is and left to validation.
func (d *decoder) portNumber(path string, n *yaml.Node, s string) (uint16, bool) {
	v, ok := parseInt(s)
	if !ok || v < 0 || v > 65535 {
		d.bad[path] = true
		d.report(n, path, fmt.Sprintf("port %s is out of range 1-65535", s), "")
		return 0, false
	}
	return uint16(v), true
}

// parseProtocol parses a port mapping's protocol, tcp or udp.
func parseProtocol(s string) (Protocol, bool) {
	switch s {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	}
	return 0, false
}

// protocolHint is the hint for an unknown protocol s: a "did you mean"
// when s looks like tcp or udp, else what kpf forwards. spell writes a
// protocol the way the mapping would be written with it.
func protocolHint(s string, spell func(proto string) string) string {
	if c := suggest.Closest(s, []string{"tcp", "udp"}); c != "" {
		return fmt.Sprintf("did you mean %s?", spell(c))
	}
	return fmt.Sprintf("kpf forwards tcp (the default) and udp: write %s for UDP", spell("udp"))
}

// shortPort decodes "LOCAL:REMOTE" or "PORT", each with an optional
// "/tcp" or "/udp".
func (d *decoder) shortPort(path string, n *yaml.Node) (PortMapping, bool) {
	var pm PortMapping
	spec, proto, hasProto := strings.Cut(n.Value, "/")
	if hasProto {
		p, ok := parseProtocol(proto)
		if !ok {
			d.report(n, path, fmt.Sprintf("invalid port %q: unknown protocol %q", n.Value, proto),
				protocolHint(proto, func(p string) string { return strconv.Quote(spec + "/" + p) }))
			return PortMapping{}, false
		}
		pm.Protocol = p
	}
	local, remote, found := strings.Cut(spec, ":")
	if local == "" || strings.Contains(remote, ":") || found && remote == "" {
		d.report(n, path, fmt.Sprintf("invalid port %q", n.Value), `write "LOCAL:REMOTE", "PORT" or a number, with /udp after it for UDP`)
		return PortMapping{}, false
	}
	var ok bool
	switch {
	case local == autoPort && !found:
		d.report(n, path, fmt.Sprintf("invalid port %q: auto needs the remote port", n.Value), `write "auto:REMOTE", as in "auto:5432"`)
		return PortMapping{}, false
	case local == autoPort:
		pm.Auto = true
	case !allDigits(local):
		d.report(n, path, fmt.Sprintf("invalid port %q: the local port must be a number or auto", n.Value), `write "LOCAL:REMOTE", "auto:REMOTE", "PORT" or a number`)
		return PortMapping{}, false
	default:
		if pm.Local, ok = d.portNumber(path, n, local); !ok {
			return PortMapping{}, false
		}
	}
	switch {
	case !found:
		pm.Remote.Number = pm.Local
	case allDigits(remote):
		if pm.Remote.Number, ok = d.portNumber(path, n, remote); !ok {
			return PortMapping{}, false
		}
	default:
		pm.Remote.Name = remote
	}
	return pm, true
}
