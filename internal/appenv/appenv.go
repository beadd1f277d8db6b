// Package appenv computes the environment kpf gives applications: for
// each forward, where to reach it (KPF_<NAME>_HOST, _PORT, _ADDR, and
// _PORT_<REMOTE> per port), plus the forward's own variables, written as
// templates over the same facts. It also writes an environment as shell,
// dotenv or JSON.
//
// Only what kpf itself decides goes in: addresses and ports. Nothing is
// read from the cluster, so no secret can reach an environment this way.
// Templates are text/template with no functions of kpf's and data
// without methods: expanding one cannot run code.
package appenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Forward is what the environment of one forward is made of.
type Forward struct {
	// Name is the forward's name, as in forwards.yaml.
	Name string
	// Ports are its mappings, in the file's order.
	Ports []Port
	// Env are its own variables: names to templates (see Fields).
	Env map[string]string
}

// Port is one mapping of a forward.
type Port struct {
	// Local is the address listened on, host:port, with the real port.
	Local string
	// Remote is the remote port as the file names it: a number or a name,
	// followed by "/udp" for a UDP mapping ("53/udp": its variable is
	// KPF_<NAME>_PORT_53_UDP, its key in .Ports "53/udp").
	Remote string
	// Also are its other spellings, as the target defines the port (its
	// number when the file names it, its name when the file gives the
	// number); empty when not known.
	Also []string
}

// names are p's spellings, the file's first, without repeats or blanks.
func (p Port) names() []string {
	out := []string{p.Remote}
	for _, a := range p.Also {
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Fields is the data a template of env: sees; templates may use exactly
// these fields.
type Fields struct {
	// Name is the forward's name.
	Name string
	// Host, Port and Addr are the first mapping's local host, port and
	// host:port.
	Host string
	Port int
	Addr string
	// Ports maps each mapping's remote port, by number and by name (as
	// the target defines it, when known), to its local port:
	// {{index .Ports "5432"}}, {{index .Ports "postgres"}}.
	Ports map[string]int
}

// Var is one variable.
type Var struct {
	Name, Value string
}

// Prefix is "KPF_<NAME>_" for a forward name: upper case, with '-' and
// '.' as '_'.
func Prefix(name string) string {
	return "KPF_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(name)) + "_"
}

// fields returns the template data of f.
func fields(f Forward) (Fields, error) {
	d := Fields{Name: f.Name, Ports: map[string]int{}}
	for i, p := range f.Ports {
		host, port, err := net.SplitHostPort(p.Local)
		if err != nil {
			return d, fmt.Errorf("forward %s: local address %q: %w", f.Name, p.Local, err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return d, fmt.Errorf("forward %s: local port %q: %w", f.Name, port, err)
		}
		if i == 0 {
			d.Host, d.Port, d.Addr = host, n, p.Local
		}
		for _, name := range p.names() {
			if _, taken := d.Ports[name]; !taken {
				d.Ports[name] = n
			}
		}
	}
	return d, nil
}

// Vars returns f's variables: the KPF_ ones, then its own (by name), each
// list sorted by name.
func Vars(f Forward) ([]Var, error) {
	d, err := fields(f)
	if err != nil {
		return nil, err
	}
	if len(f.Ports) == 0 {
		return nil, nil
	}
	p := Prefix(f.Name)
	vars := []Var{{p + "ADDR", d.Addr}, {p + "HOST", d.Host}, {p + "PORT", strconv.Itoa(d.Port)}}
	seen := map[string]bool{}
	for _, m := range f.Ports {
		for _, name := range m.names() {
			v := p + "PORT_" + strings.NewReplacer("-", "_", ".", "_", "/", "_").Replace(strings.ToUpper(name))
			if !seen[v] {
				seen[v] = true
				vars = append(vars, Var{v, strconv.Itoa(d.Ports[name])})
			}
		}
	}
	sortVars(vars)
	var own []Var
	for name, text := range f.Env {
		v, err := expand(name, text, d)
		if err != nil {
			return nil, fmt.Errorf("forward %s: env %s: %w", f.Name, name, err)
		}
		own = append(own, Var{name, v})
	}
	sortVars(own)
	return append(vars, own...), nil
}

func sortVars(vs []Var) {
	slices.SortFunc(vs, func(a, b Var) int { return strings.Compare(a.Name, b.Name) })
}

// expand runs one template over d.
func expand(name, text string, d Fields) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Check reports whether text is a template kpf can expand: it parses, and
// uses only Fields (checked by expanding it over sample data). The error
// says what is wrong in the template's words, without the template
// package's prefixes.
func Check(text string) error {
	sample := Fields{Name: "name", Host: "127.0.0.1", Port: 1, Addr: "127.0.0.1:1", Ports: map[string]int{}}
	_, err := expand("env", text, sample)
	var ee template.ExecError
	if errors.As(err, &ee) {
		err = ee.Err
	}
	if err != nil {
		msg := err.Error()
		// "template: env:1:9: executing "env" at <.Hots>: can't evaluate
		// field Hots in type appenv.Fields" → what follows the last ": ".
		if i := strings.Index(msg, "can't evaluate field "); i >= 0 {
			field := strings.Fields(msg[i+len("can't evaluate field "):])[0]
			return fmt.Errorf("unknown field .%s (the fields are .Name, .Host, .Port, .Addr and .Ports)", field)
		}
		return errors.New(strings.TrimPrefix(msg, "template: "))
	}
	return nil
}

// ValidName reports whether name can be an environment variable's name:
// letters, digits and '_', not starting with a digit.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
