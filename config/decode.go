package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// YAML core tags, as returned by yaml.Node.ShortTag.
const (
	tagNull      = "!!null"
	tagBool      = "!!bool"
	tagStr       = "!!str"
	tagInt       = "!!int"
	tagFloat     = "!!float"
	tagTimestamp = "!!timestamp"
	tagBinary    = "!!binary"
	tagMerge     = "!!merge"
)

// stepBudget bounds the number of nodes visited while decoding a file of
// size bytes. Aliases let a small file describe a very large tree; a file
// without aliases never comes near the bound, which grows with its size.
func stepBudget(size int) int { return 1<<16 + 4*size }

// walker decodes a yaml.Node tree into the configuration structs,
// following their yaml tags, and records what it saw on the way.
type walker struct {
	file   string
	lookup func(string) (string, bool)

	errs []FieldError
	// lines maps a key path to the line of its key (or, for list items,
	// of the item).
	lines map[string]int
	// set holds the key paths that were given a non-null value.
	set map[string]bool
	// bad holds the key paths whose value could not be decoded;
	// validation stays quiet about them and everything below them.
	bad map[string]bool

	steps    int
	maxSteps int
	aborted  bool
	// merging holds the mappings currently being merged with <<, to stop
	// a mapping that merges itself.
	merging map[*yaml.Node]bool
	// lenient skips unknown keys silently: set while reading the name of
	// a middleware entry, or an entry of no known kind.
	lenient bool
}

func newWalker(file string, size int, lookup func(string) (string, bool)) *walker {
	return &walker{
		file:     file,
		lookup:   lookup,
		lines:    make(map[string]int),
		set:      make(map[string]bool),
		bad:      make(map[string]bool),
		maxSteps: stepBudget(size),
		merging:  make(map[*yaml.Node]bool),
	}
}

// add records a problem.
func (w *walker) add(path string, line int, format string, args ...any) {
	w.errs = append(w.errs, FieldError{File: w.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fail records a problem with the value at path and marks path as bad.
func (w *walker) fail(path string, line int, format string, args ...any) {
	w.bad[path] = true
	w.add(path, line, format, args...)
}

// step counts one visited node and reports whether decoding may go on.
func (w *walker) step(line int) bool {
	if w.aborted {
		return false
	}
	w.steps++
	if w.steps > w.maxSteps {
		w.aborted = true
		w.add("", line, "aliases expand to too many values (more than %d); decoding stopped here", w.maxSteps)
		return false
	}
	return true
}

// decodeRoot decodes a document node into c.
func (w *walker) decodeRoot(doc *yaml.Node, c *Config) {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull {
		return
	}
	if n.Kind != yaml.MappingNode {
		w.add("", n.Line, "the configuration must be a mapping, got %s", describe(n))
		return
	}
	w.decode(n, reflect.ValueOf(c).Elem(), "", n.Line)
}

// decode decodes n into v. path names v; line is the line to report
// problems at.
func (w *walker) decode(n *yaml.Node, v reflect.Value, path string, line int) {
	if !w.step(line) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.fail(path, line, "unresolved alias")
			return
		}
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode {
		var ok bool
		if n, ok = w.expand(n, path, line); !ok {
			return
		}
		if n.ShortTag() == tagNull {
			v.Set(reflect.Zero(v.Type()))
			return
		}
	}
	w.set[path] = true
	w.decodeValue(n, v, path, line)
}

// expand returns n with environment variables expanded in its value. The
// tree itself is never modified: an aliased node is expanded afresh at
// each use. A plain scalar is re-resolved after expansion, so that
// `port: ${PORT}` is an integer when PORT is; a quoted one stays a string.
func (w *walker) expand(n *yaml.Node, path string, line int) (*yaml.Node, bool) {
	if !strings.Contains(n.Value, "$") {
		return n, true
	}
	v, err := expandEnv(n.Value, w.lookup)
	if err != nil {
		w.fail(path, line, "%s", err)
		return nil, false
	}
	if v == n.Value {
		return n, true
	}
	c := *n
	c.Value = v
	const explicit = yaml.TaggedStyle | yaml.SingleQuotedStyle | yaml.DoubleQuotedStyle | yaml.LiteralStyle | yaml.FoldedStyle
	if c.Style&explicit == 0 {
		c.Tag = ""
	}
	return &c, true
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	middlewareType  = reflect.TypeFor[Middleware]()
)

// decodeValue decodes a non-null, expanded, non-alias node n into v.
func (w *walker) decodeValue(n *yaml.Node, v reflect.Value, path string, line int) {
	if v.Type() == middlewareType {
		w.middleware(n, v.Addr().Interface().(*Middleware), path, line)
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			w.fail(path, line, "%s", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		w.decodeValue(n, p.Elem(), path, line)
		v.Set(p)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(path, line, "expected a mapping, got %s", describe(n))
			return
		}
		info := structInfoOf(v.Type())
		w.mapping(n, v, path, info, make(map[string]int), true)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(path, line, "expected a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			w.lines[p] = item.Line
			w.decode(item, s.Index(i), p, item.Line)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind == yaml.ScalarNode {
			switch n.ShortTag() {
			case tagStr, tagInt, tagFloat, tagBool, tagTimestamp:
				v.SetString(n.Value)
				return
			}
		}
		w.fail(path, line, "expected a string, got %s", describe(n))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != tagInt {
			w.fail(path, line, "expected an integer, got %s", describe(n))
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			w.fail(path, line, "integer %s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != tagFloat && n.ShortTag() != tagInt) || n.Decode(&f) != nil {
			w.fail(path, line, "expected a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != tagBool || n.Decode(&b) != nil {
			w.fail(path, line, "expected a boolean (true or false), got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(path, line, "expected a mapping, got %s", describe(n))
			return
		}
		if v.Type().Key().Kind() != reflect.String {
			w.fail(path, line, "unsupported field type %s", v.Type())
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				w.fail(path, k.Line, "expected a string key, got %s", describe(k))
				continue
			}
			p := joinPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				w.fail(p, k.Line, "duplicate key (first set at line %d)", first)
				continue
			}
			seen[k.Value] = k.Line
			w.lines[p] = val.Line
			elem := reflect.New(v.Type().Elem()).Elem()
			w.decode(val, elem, p, val.Line)
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), elem)
		}
		v.Set(m)
	case reflect.Interface:
		// Free-form values (a plugin's config): mappings, lists and
		// scalars as YAML reads them, with ${VAR} expanded throughout.
		switch n.Kind {
		case yaml.MappingNode:
			mv := reflect.New(reflect.TypeFor[map[string]any]()).Elem()
			w.decodeValue(n, mv, path, line)
			v.Set(mv)
		case yaml.SequenceNode:
			items := make([]any, len(n.Content))
			for i, item := range n.Content {
				p := path + "[" + strconv.Itoa(i) + "]"
				w.lines[p] = item.Line
				iv := reflect.New(reflect.TypeFor[any]()).Elem()
				w.decode(item, iv, p, item.Line)
				items[i] = iv.Interface()
			}
			v.Set(reflect.ValueOf(items))
		default:
			var x any
			if err := n.Decode(&x); err != nil {
				w.fail(path, line, "%s", err)
				return
			}
			if x != nil {
				v.Set(reflect.ValueOf(x))
			}
		}
	default:
		// Not reachable with the types in types.go.
		w.fail(path, line, "unsupported field type %s", v.Type())
	}
}

// mapping decodes the pairs of the mapping n into the struct v. seen maps
// the keys already decoded to their lines: explicit keys win over merged
// ones, and earlier merges win over later ones. explicit is false for a
// mapping reached through a << merge key.
func (w *walker) mapping(n *yaml.Node, v reflect.Value, path string, info *structInfo, seen map[string]int, explicit bool) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if isMergeKey(k) {
			merges = append(merges, val)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.add("", k.Line, "invalid key at %s: keys must be strings, got %s", where(path), describe(k))
			continue
		}
		key := k.Value
		p := joinPath(path, key)
		if first, dup := seen[key]; dup {
			if explicit {
				w.add(p, k.Line, "duplicate key (first set at line %d)", first)
			}
			continue
		}
		seen[key] = k.Line
		idx, ok := info.index[key]
		if !ok {
			if w.lenient {
				continue
			}
			w.add("", k.Line, "unknown key %q at %s (known: %s)", key, where(path), strings.Join(info.names, ", "))
			continue
		}
		w.lines[p] = k.Line
		w.decode(val, v.Field(idx), p, k.Line)
	}
	for _, m := range merges {
		w.merge(m, v, path, info, seen)
	}
}

// merge applies the value of a << key: a mapping or a list of mappings.
func (w *walker) merge(m *yaml.Node, v reflect.Value, path string, info *structInfo, seen map[string]int) {
	if !w.step(m.Line) {
		return
	}
	line := m.Line
	if m.Kind == yaml.AliasNode && m.Alias != nil {
		m = m.Alias
	}
	switch m.Kind {
	case yaml.MappingNode:
		w.mergeMapping(m, line, v, path, info, seen)
	case yaml.SequenceNode:
		for _, item := range m.Content {
			if !w.step(item.Line) {
				return
			}
			itemLine := item.Line
			if item.Kind == yaml.AliasNode && item.Alias != nil {
				item = item.Alias
			}
			if item.Kind != yaml.MappingNode {
				w.fail(path, itemLine, "the value of a << merge key must be a mapping or a list of mappings, got a list holding %s", describe(item))
				continue
			}
			w.mergeMapping(item, itemLine, v, path, info, seen)
		}
	default:
		w.fail(path, line, "the value of a << merge key must be a mapping or a list of mappings, got %s", describe(m))
	}
}

func (w *walker) mergeMapping(m *yaml.Node, line int, v reflect.Value, path string, info *structInfo, seen map[string]int) {
	if w.merging[m] {
		w.fail(path, line, "a << merge key refers to the mapping that contains it")
		return
	}
	w.merging[m] = true
	w.mapping(m, v, path, info, seen, false)
	delete(w.merging, m)
}

// isMergeKey reports whether k is the YAML merge key <<.
func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == tagMerge)
}

// structInfo maps the yaml keys of a struct type to its fields.
type structInfo struct {
	index map[string]int
	names []string // in declaration order, for error messages
}

var structInfos sync.Map // reflect.Type -> *structInfo

func structInfoOf(t reflect.Type) *structInfo {
	if si, ok := structInfos.Load(t); ok {
		return si.(*structInfo)
	}
	si := &structInfo{index: make(map[string]int)}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		si.index[name] = i
		si.names = append(si.names, name)
	}
	actual, _ := structInfos.LoadOrStore(t, si)
	return actual.(*structInfo)
}

// describe names the kind of value n holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil {
			return describe(n.Alias)
		}
		return "an unresolved alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case tagStr:
			return "a string"
		case tagInt:
			return "an integer"
		case tagFloat:
			return "a float"
		case tagBool:
			return "a boolean"
		case tagNull:
			return "null"
		case tagTimestamp:
			return "a timestamp"
		case tagBinary:
			return "binary data"
		default:
			return fmt.Sprintf("a value tagged %s", tag)
		}
	}
	return "an unknown node"
}

// joinPath appends key to a key path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// where names a key path in a message.
func where(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}
