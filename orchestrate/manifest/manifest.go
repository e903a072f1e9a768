// Package manifest reads and writes Kubernetes manifests (the YAML or
// JSON of kubectl apply -f and kubectl get -o yaml) as orchestrate
// objects, and applies them to a Manager as kubectl apply does.
//
// Decode reads YAML documents separated by "---", or JSON (one object,
// or a v1 List of them), into the kinds registered with Register: the
// built-in ones are v1 Pod, ConfigMap, Secret, Namespace and
// ReplicationController (kept as a ReplicaSet with an equality
// selector), apps/v1 ReplicaSet and Deployment, and batch/v1 Job. The
// fields are Kubernetes' (orchestrate's objects have Kubernetes' JSON
// form); Encode writes objects back in that form, with their apiVersion,
// kind and status, one YAML document each.
//
// # Hostile input
//
// A manifest is input from outside: Decode refuses what it does not
// understand instead of dropping it. An unknown field (a typo such as
// imagePullPolicyy), a Kubernetes field berth does not support (such as
// nodeSelector), a value of the wrong type, an unknown apiVersion or
// kind, and a document without metadata.name are errors; each is a
// *DocumentError naming the document (its index, kind and name) and the
// field path, such as spec.containers[0].imagePullPolicyy. A field
// given its zero value (replicas: 0 is kept, but readOnly: false,
// creationTimestamp: null or status: {}) is accepted whether or not
// berth has it, since leaving it out means the same. Empty documents
// are skipped. Decode checks form, not meaning: Apply validates each
// object as orchestrate.Manager.Apply does before it writes any.
package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/berthlabs/berth/orchestrate"
	"sigs.k8s.io/yaml"
)

// ErrUnknownKind is matched (errors.Is) by the error for a document
// whose apiVersion and kind are not registered.
var ErrUnknownKind = errors.New("manifest: unknown apiVersion and kind")

// DocumentError is the error Decode returns for one bad document.
type DocumentError struct {
	// Index of the document in the input, from 0 (empty documents
	// count); for an item of a List, the List's.
	Index int
	// Kind and Name of the document, as far as they could be read.
	Kind, Name string
	// Field is the path of the field at fault, such as
	// "spec.containers[0].image" (with "items[2]." first in a List);
	// empty when the error is about the document as a whole.
	Field string
	// Err says what is wrong.
	Err error
}

// Error reads "manifest: document 1 (Deployment web): spec.replicas: ...".
func (e *DocumentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "manifest: document %d", e.Index)
	if e.Kind != "" || e.Name != "" {
		fmt.Fprintf(&b, " (%s)", strings.TrimSpace(e.Kind+" "+e.Name))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns Err.
func (e *DocumentError) Unwrap() error { return e.Err }

// Converter is implemented by objects that a registered kind decodes
// into but that berth stores as another kind: Decode returns what
// Convert returns (a ReplicationController becomes a ReplicaSet).
type Converter interface {
	Convert() (orchestrate.Object, error)
}

var registry = struct {
	sync.RWMutex
	kinds   map[string]func() orchestrate.Object // "apiVersion kind" → new object
	version map[string]string                    // object kind → apiVersion, for Encode
}{kinds: map[string]func() orchestrate.Object{}, version: map[string]string{}}

// Register makes Decode read documents of apiVersion and kind into the
// object newObject returns (a new, empty one on each call), and Encode
// write objects of that Object.Kind with apiVersion, unless newObject's
// objects are a Converter. A later registration of the same apiVersion
// and kind replaces the earlier one. It is safe for concurrent use; kinds
// are usually registered from an init function.
func Register(apiVersion, kind string, newObject func() orchestrate.Object) {
	registry.Lock()
	defer registry.Unlock()
	registry.kinds[apiVersion+" "+kind] = newObject
	if _, conv := newObject().(Converter); !conv {
		registry.version[newObject().Kind()] = apiVersion
	}
}

func init() {
	Register("v1", orchestrate.KindPod, func() orchestrate.Object { return &orchestrate.Pod{} })
	Register("v1", orchestrate.KindConfigMap, func() orchestrate.Object { return &orchestrate.ConfigMap{} })
	Register("v1", orchestrate.KindSecret, func() orchestrate.Object { return &orchestrate.Secret{} })
	Register("v1", orchestrate.KindNamespace, func() orchestrate.Object { return &orchestrate.Namespace{} })
	Register("v1", "ReplicationController", func() orchestrate.Object { return &replicationController{} })
	Register("apps/v1", orchestrate.KindReplicaSet, func() orchestrate.Object { return &orchestrate.ReplicaSet{} })
	Register("apps/v1", orchestrate.KindDeployment, func() orchestrate.Object { return &orchestrate.Deployment{} })
	Register("batch/v1", orchestrate.KindJob, func() orchestrate.Object { return &orchestrate.Job{} })
	Register("v1", orchestrate.KindService, func() orchestrate.Object { return &orchestrate.Service{} })
	Register("v1", orchestrate.KindEndpoints, func() orchestrate.Object { return &orchestrate.Endpoints{} })
}

// lookup returns the factory of apiVersion and kind, or an error that
// says which apiVersion the kind has when only that is wrong.
func lookup(apiVersion, kind string) (func() orchestrate.Object, error) {
	registry.RLock()
	defer registry.RUnlock()
	if f := registry.kinds[apiVersion+" "+kind]; f != nil {
		return f, nil
	}
	var others []string
	for k := range registry.kinds {
		if v, kd, _ := strings.Cut(k, " "); kd == kind {
			others = append(others, v)
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		return nil, fmt.Errorf("%w: %s is not served as %s (it is %s)", ErrUnknownKind, kind, apiVersion, strings.Join(others, ", "))
	}
	return nil, fmt.Errorf("%w: %s %s", ErrUnknownKind, apiVersion, kind)
}

// apiVersionOf returns the apiVersion Encode writes for kind.
func apiVersionOf(kind string) (string, bool) {
	registry.RLock()
	defer registry.RUnlock()
	v, ok := registry.version[kind]
	return v, ok
}

// Decode reads the objects of a manifest: YAML documents separated by
// "---" lines, or JSON (one object or a v1 List). See the package
// documentation for what is refused; the first bad document stops it.
func Decode(r io.Reader) ([]orchestrate.Object, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("manifest: read: %w", err)
	}
	var out []orchestrate.Object
	for i, doc := range splitDocuments(data) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, &DocumentError{Index: i, Err: fmt.Errorf("not YAML or JSON: %w", err)}
		}
		js = bytes.TrimSpace(js)
		if len(js) == 0 || string(js) == "null" {
			continue // empty, or only comments
		}
		var tree any
		d := json.NewDecoder(bytes.NewReader(js))
		d.UseNumber()
		if err := d.Decode(&tree); err != nil {
			return nil, &DocumentError{Index: i, Err: err}
		}
		m, ok := tree.(map[string]any)
		if !ok {
			return nil, &DocumentError{Index: i, Err: fmt.Errorf("a document must be an object (a mapping), not %s", jsonType(tree))}
		}
		objs, err := decodeDocument(i, "", m)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// splitDocuments splits YAML at its "---" document separators; JSON
// input (starting with '{' or '[') is one document.
func splitDocuments(data []byte) [][]byte {
	if t := bytes.TrimSpace(data); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		return [][]byte{data}
	}
	var docs [][]byte
	var cur []byte
	for line := range bytes.Lines(data) {
		l := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(l, []byte("---")) || bytes.HasPrefix(l, []byte("--- ")) {
			docs = append(docs, cur)
			cur = nil
			if rest := bytes.TrimSpace(l[3:]); len(rest) > 0 && rest[0] != '#' {
				cur = append(cur, rest...)
				cur = append(cur, '\n')
			}
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}

// decodeDocument decodes one document (or, for a List, its items); item
// is the path prefix of a List's item ("items[2].").
func decodeDocument(index int, item string, m map[string]any) ([]orchestrate.Object, error) {
	apiVersion, _ := m["apiVersion"].(string)
	kind, _ := m["kind"].(string)
	name := ""
	if md, ok := m["metadata"].(map[string]any); ok {
		name, _ = md["name"].(string)
	}
	fail := func(field string, err error) error {
		if field != "" {
			field = item + field
		} else if item != "" {
			field = strings.TrimSuffix(item, ".")
		}
		return &DocumentError{Index: index, Kind: kind, Name: name, Field: field, Err: err}
	}
	for _, k := range []string{"apiVersion", "kind"} {
		if s, ok := m[k].(string); !ok || s == "" {
			return nil, fail(k, errors.New("missing, or not a string"))
		}
	}
	if kind == "List" && item == "" {
		if apiVersion != "v1" {
			return nil, fail("apiVersion", fmt.Errorf("%w: List is v1, not %s", ErrUnknownKind, apiVersion))
		}
		for k := range m {
			if k != "apiVersion" && k != "kind" && k != "items" && k != "metadata" {
				return nil, fail(k, errors.New("unknown field of a List"))
			}
		}
		items, ok := m["items"].([]any)
		if !ok && m["items"] != nil {
			return nil, fail("items", errors.New("not a list"))
		}
		var out []orchestrate.Object
		for j, it := range items {
			im, ok := it.(map[string]any)
			if !ok {
				return nil, fail(fmt.Sprintf("items[%d]", j), errors.New("not an object"))
			}
			objs, err := decodeDocument(index, fmt.Sprintf("items[%d].", j), im)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	newObject, err := lookup(apiVersion, kind)
	if err != nil {
		return nil, fail("", err)
	}
	if name == "" {
		return nil, fail("metadata.name", errors.New("missing: every object needs a name (generateName is not supported)"))
	}
	body := make(map[string]any, len(m))
	for k, v := range m {
		if k != "apiVersion" && k != "kind" {
			body[k] = v
		}
	}
	if err := stripOwnerAPIVersions(body); err != nil {
		return nil, fail("metadata.ownerReferences", err)
	}
	var stringData map[string]string
	if kind == orchestrate.KindSecret && apiVersion == "v1" {
		if sd, ok := body["stringData"]; ok {
			delete(body, "stringData")
			if field, err := readStringData(sd, &stringData); err != nil {
				return nil, fail(field, err)
			}
		}
	}
	js, err := json.Marshal(body)
	if err != nil {
		return nil, fail("", err)
	}
	obj := newObject()
	if err := json.Unmarshal(js, obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fail(locate(body, te.Field, te.Value), fmt.Errorf("%s is not a valid %s", jsonKind(te.Value), te.Type))
		}
		return nil, fail("", err)
	}
	// What the object holds, written back, must account for every field
	// given: anything else was not understood.
	back, err := json.Marshal(obj)
	if err != nil {
		return nil, fail("", err)
	}
	var kept any
	d := json.NewDecoder(bytes.NewReader(back))
	d.UseNumber()
	if err := d.Decode(&kept); err != nil {
		return nil, fail("", err)
	}
	if field := firstDropped(body, kept, ""); field != "" {
		return nil, fail(field, errors.New("unknown field, or one berth does not support"))
	}
	if s, ok := obj.(*orchestrate.Secret); ok && stringData != nil {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range stringData {
			s.Data[k] = []byte(v) // stringData wins, as in the API server
		}
	}
	if c, ok := obj.(Converter); ok {
		conv, err := c.Convert()
		if err != nil {
			return nil, fail("", err)
		}
		obj = conv
	}
	return []orchestrate.Object{obj}, nil
}

// readStringData reads a Secret's stringData: a mapping of strings.
func readStringData(v any, out *map[string]string) (string, error) {
	if v == nil {
		return "", nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "stringData", fmt.Errorf("%s is not a mapping of strings", jsonType(v))
	}
	*out = make(map[string]string, len(m))
	for k, x := range m {
		s, ok := x.(string)
		if !ok {
			return "stringData." + k, fmt.Errorf("%s is not a string", jsonType(x))
		}
		(*out)[k] = s
	}
	return "", nil
}

// stripOwnerAPIVersions checks and removes the apiVersion (and the
// blockOwnerDeletion hint, which only foreground deletion, not done by
// berth, heeds) of each owner reference: berth's owner references name
// a kind only.
func stripOwnerAPIVersions(body map[string]any) error {
	md, _ := body["metadata"].(map[string]any)
	refs, _ := md["ownerReferences"].([]any)
	for i, r := range refs {
		ref, ok := r.(map[string]any)
		if !ok {
			continue // the decoder says what is wrong
		}
		delete(ref, "blockOwnerDeletion")
		v, has := ref["apiVersion"]
		if !has {
			continue
		}
		kind, _ := ref["kind"].(string)
		s, _ := v.(string)
		if want, ok := apiVersionOf(kind); !ok || s != want {
			return fmt.Errorf("[%d].apiVersion: %q is not the apiVersion of kind %q", i, s, kind)
		}
		delete(ref, "apiVersion")
	}
	return nil
}

// firstDropped returns the path (under prefix) of the first field, in
// sorted order, that in has with a value other than its zero and kept
// does not: a field the object did not take.
func firstDropped(in, kept any, prefix string) string {
	switch x := in.(type) {
	case map[string]any:
		km, _ := kept.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(x)) {
			p := childPath(prefix, k)
			kv, ok := km[k]
			if !ok {
				if !isZero(x[k]) {
					return p
				}
				continue
			}
			if f := firstDropped(x[k], kv, p); f != "" {
				return f
			}
		}
	case []any:
		kl, _ := kept.([]any)
		for i, v := range x {
			p := prefix + "[" + strconv.Itoa(i) + "]"
			if i >= len(kl) {
				if !isZero(v) {
					return p
				}
				continue
			}
			if f := firstDropped(v, kl[i], p); f != "" {
				return f
			}
		}
	}
	return ""
}

// isZero reports whether a JSON value means the same as leaving it out:
// null, false, 0, "", or an empty list or mapping (or one of zeros).
func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case string:
		return x == ""
	case json.Number:
		f, err := x.Float64()
		return err == nil && f == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !isZero(e) {
				return false
			}
		}
		return true
	}
	return false
}

// locate turns the dotted field of a json.UnmarshalTypeError
// ("spec.containers.image", no indexes) into the path of the first
// value of tree it matches ("spec.containers[0].image").
func locate(tree any, field, value string) string {
	if field == "" {
		return ""
	}
	parts := strings.Split(field, ".")
	var walk func(v any, i int, path string) (string, bool)
	walk = func(v any, i int, path string) (string, bool) {
		if l, ok := v.([]any); ok {
			for j, e := range l {
				if p, ok := walk(e, i, path+"["+strconv.Itoa(j)+"]"); ok {
					return p, true
				}
			}
			return "", false
		}
		if i == len(parts) {
			return path, true
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		e, ok := m[parts[i]]
		if !ok {
			if i > 0 {
				// The name of an embedded Go struct ("plain"), not a key.
				return walk(v, i+1, path)
			}
			return "", false
		}
		p := parts[i]
		if path != "" {
			p = path + "." + p
		}
		if i == len(parts)-1 {
			return p + refine(e, value), true
		}
		return walk(e, i+1, p)
	}
	// A custom decoder (a PodSpec's) reports fields from where it
	// starts: find the first subtree, in sorted order, that has them.
	var anywhere func(v any, path string) (string, bool)
	anywhere = func(v any, path string) (string, bool) {
		if p, ok := walk(v, 0, path); ok {
			return p, true
		}
		switch x := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				p := childPath(path, k)
				if r, ok := anywhere(x[k], p); ok {
					return r, true
				}
			}
		case []any:
			for j, e := range x {
				if r, ok := anywhere(e, path+"["+strconv.Itoa(j)+"]"); ok {
					return r, true
				}
			}
		}
		return "", false
	}
	if p, ok := anywhere(tree, ""); ok {
		return p
	}
	return field
}

// refine returns the path, under a mapping or list v, of its first
// element (in sorted order) whose JSON type is value (an
// UnmarshalTypeError's: "number", "string", ...), as ".key" or "[i]";
// "" when v is that value itself.
func refine(v any, value string) string {
	matches := func(e any) bool {
		t := jsonType(e)
		return strings.HasSuffix(t, " "+value) || (value == "object" && t == "a mapping") || (value == "array" && t == "a list") || (value == "bool" && t == "a boolean")
	}
	if matches(v) {
		return ""
	}
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if matches(x[k]) {
				return "." + k
			}
		}
	case []any:
		for i, e := range x {
			if matches(e) {
				return "[" + strconv.Itoa(i) + "]"
			}
		}
	}
	return ""
}

// jsonKind names the JSON type of an UnmarshalTypeError's value
// ("number", "string", "object"...).
func jsonKind(v string) string {
	if v == "" {
		return "the value"
	}
	return "a JSON " + v
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return reflect.TypeOf(v).String()
}

// Encode writes objs as kubectl get -o yaml writes each: apiVersion,
// kind, metadata, spec and status in Kubernetes' field names, keys
// sorted, one YAML document each, separated by "---" lines. An object
// whose kind is not registered, or that has no Kubernetes form (a
// container user given by name), is an error and nothing more is
// written.
func Encode(w io.Writer, objs ...orchestrate.Object) error {
	var buf bytes.Buffer
	for i, obj := range objs {
		if obj == nil || reflect.ValueOf(obj).IsNil() {
			return fmt.Errorf("manifest: encode object %d: nil", i)
		}
		what := fmt.Sprintf("manifest: encode %s %s", obj.Kind(), obj.Meta().Name)
		apiVersion, ok := apiVersionOf(obj.Kind())
		if !ok {
			return fmt.Errorf("%s: %w: no apiVersion is registered for kind %s", what, ErrUnknownKind, obj.Kind())
		}
		js, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		m["apiVersion"], m["kind"] = apiVersion, obj.Kind()
		if md, ok := m["metadata"].(map[string]any); ok {
			refs, _ := md["ownerReferences"].([]any)
			for _, r := range refs {
				if ref, ok := r.(map[string]any); ok {
					if v, ok := apiVersionOf(fmt.Sprint(ref["kind"])); ok {
						ref["apiVersion"] = v
					}
				}
			}
		}
		js, err = json.Marshal(m)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(y)
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Apply applies objs to m as kubectl apply -f does with a manifest:
// each is created, or updated when an object of its kind, namespace and
// name exists (its labels, annotations and spec replaced; UID, status
// and the ResourceVersion sequence kept, as orchestrate.Manager.Apply
// does). All or nothing: every object is validated first, as
// Manager.ApplyAll does (Namespaces among objs count as existing and are
// applied first), and if one is refused nothing is written. It returns
// the objects as stored, in the order of objs.
func Apply(ctx context.Context, m *orchestrate.Manager, objs []orchestrate.Object) ([]orchestrate.Object, error) {
	if slices.Contains(objs, nil) {
		return nil, errors.New("manifest: apply: a nil object")
	}
	out, err := m.ApplyAll(ctx, objs...)
	if err != nil {
		return nil, fmt.Errorf("manifest: apply: %w", err)
	}
	return out, nil
}

// childPath is the field path of key k under prefix.
func childPath(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}
