package orchestrate

import "strings"

// ClusterScoped reports whether objects of a kind are outside every
// namespace, as KindNamespace is: their ObjectMeta.Namespace is empty.
// Objects of every other kind are in a namespace.
func ClusterScoped(kind string) bool { return kind == KindNamespace || kind == KindNode }

// NamespaceOf returns the namespace an object of kind named with
// namespace ns is stored in: "" for a cluster-scoped kind, and
// NamespaceDefault for an empty ns of any other kind. Stores use it to
// read what callers write.
func NamespaceOf(kind, ns string) string {
	switch {
	case ClusterScoped(kind):
		return ""
	case ns == "":
		return NamespaceDefault
	}
	return ns
}

// objectKey is the key of an object of one kind in a controller's
// queue: "namespace/name", as Kubernetes' cache keys (just "name" for a
// cluster-scoped object).
func objectKey(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// keyOf returns the queue key of an object.
func keyOf(obj Object) string {
	m := obj.Meta()
	return objectKey(NamespaceOf(obj.Kind(), m.Namespace), m.Name)
}

// splitKey returns the namespace and name of a queue key.
func splitKey(key string) (namespace, name string) {
	if ns, n, ok := strings.Cut(key, "/"); ok {
		return ns, n
	}
	return "", key
}
