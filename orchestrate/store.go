package orchestrate

import "context"

// Store holds declared objects: their spec (desired state) and status
// (observed state). Package memstore keeps them in memory; another
// implementation (a replicated one, on etcd) can be plugged into a
// Manager through Options.Store. Package storetest checks an
// implementation against this contract; every implementation must pass
// it unchanged.
//
// # Objects and copies
//
// An object is identified by its kind (Object.Kind), its namespace
// (ObjectMeta.Namespace) and its name (ObjectMeta.Name), unique within
// the kind and namespace: two pods named "web" in two namespaces are two
// objects. An object of a cluster-scoped kind (ClusterScoped:
// KindNamespace) has no namespace; one that names one is refused with
// ErrInvalid. For every other kind an empty namespace means
// NamespaceDefault, in what callers write and in the namespace they pass
// to Get and Delete: the store keeps the namespace that NamespaceOf
// returns and hands objects out with it set. The store does not check
// that a namespace exists (the Manager does, as Kubernetes' API server
// does on admission). Objects handed to a Store
// are not kept: changing one after the call changes nothing stored.
// Objects handed out (by every method and on every watch) are copies the
// caller owns: changing one changes neither the store nor what other
// callers and watchers see. A nil object or one without a name is
// refused with ErrInvalid.
//
// # Metadata the store sets
//
// Create sets UID (a new random one, so an object deleted and created
// anew has another UID), Generation (1), CreationTime and
// ResourceVersion, and clears DeletionTime and the status. Update and
// UpdateStatus keep UID, CreationTime and Generation as stored, except
// that Update increments Generation when the spec changed: the Spec
// field, or for kinds without one (ConfigMap, Secret) every exported
// field but ObjectMeta and Status. Changes of labels, annotations, owner
// references or status leave Generation as it is.
//
// # Resource versions
//
// Every write that changes something (Create, Update, UpdateStatus,
// Delete) gets a new ResourceVersion, greater than every one handed out
// before by the store, across all kinds: the store's revision. A write
// that would change nothing (the object as given equals the stored one)
// is not a write: it returns the stored object with its version
// unchanged and no watch sees it.
//
// # Optimistic concurrency
//
// Update and UpdateStatus are conditional: an object whose
// ResourceVersion is not 0 and not the stored one's is refused with
// ErrConflict, and so is one whose UID is not empty and not the stored
// one's (the object was deleted and created anew). ResourceVersion 0
// and an empty UID skip those checks. Of concurrent conditional writes
// to one object read at one version, exactly one succeeds. Delete is
// unconditional.
//
// # Status
//
// The status (an object's Status field, which kinds such as ConfigMap do
// not have) is a subresource, as in Kubernetes: Create clears it, Update
// keeps the stored one whatever the caller sent, and UpdateStatus
// replaces the status only (the metadata and spec sent with it are
// ignored). UpdateStatus of a kind without a status is refused with
// ErrInvalid.
//
// # Deletion
//
// Delete removes an object at once, whatever its DeletionTime. A graceful
// deletion is an Update that sets DeletionTime, which only a Pod or a
// Namespace may be given (ErrInvalid for other kinds: nothing would
// finish their deletion); once set it is kept as it is by
// every Update (it cannot be cleared or changed), and the spec of such an
// object can no longer change (ErrInvalid).
//
// # Errors
//
// Errors match the sentinels with errors.Is: ErrNotFound when Get,
// Update, UpdateStatus or Delete name an object that does not exist;
// ErrExists when Create names one that does; ErrConflict as said above;
// ErrInvalid for what no store can hold or what the rules above refuse;
// ErrExpired when a watch asks for changes the store no longer holds.
// Other errors (a lost connection) are the implementation's own, wrapped
// with what was being done.
//
// # Watches
//
// Watch sends the changes to objects of a kind (of all kinds when kind
// is ""), in WatchOptions.Namespace (in all when it is NamespaceAll),
// from when it begins until ctx ends; then the channel is closed.
// A change is a WatchEvent: WatchAdded for Create, WatchModified for
// Update and UpdateStatus, WatchDeleted for Delete (carrying the last
// stored state, with the deletion's ResourceVersion). The changes of one
// watch come in ResourceVersion order, each once, none left out, and
// every watch sees a write in the same order. A slow reader delays only
// itself: writes never wait for watchers. A watch on a remote store can
// break (the connection lost, the history compacted): it then sends a
// WatchError and its channel closes.
//
// With WatchOptions.SendInitial, the objects stored when the watch
// begins come first, as WatchAdded events sorted by kind, namespace and
// name, and
// then one WatchBookmark whose ResourceVersion is the store's revision
// when the watch began: every change after it follows. With
// WatchOptions.Since, the watch replays every change after that version
// first (then follows, as above); if the store no longer holds that
// history, Watch fails with ErrExpired. How much history a store keeps
// is its own (memstore: WithHistory; etcd: until it is compacted); a
// watch from the store's current revision always works. A store may send a WatchBookmark
// at any other time; its ResourceVersion says that every change up to it
// has been sent.
//
// All methods are safe for concurrent use.
type Store interface {
	// Create stores a new object and returns it as stored: ErrExists if
	// the kind, namespace and name are taken.
	Create(ctx context.Context, obj Object) (Object, error)
	// Update replaces an object's metadata and spec (its status is kept)
	// and returns it as stored.
	Update(ctx context.Context, obj Object) (Object, error)
	// UpdateStatus replaces an object's status only and returns it as
	// stored.
	UpdateStatus(ctx context.Context, obj Object) (Object, error)
	// Delete removes an object (namespace "" is NamespaceDefault, and is
	// ignored for a cluster-scoped kind).
	Delete(ctx context.Context, kind, namespace, name string) error
	// Get returns an object (namespace as for Delete).
	Get(ctx context.Context, kind, namespace, name string) (Object, error)
	// List returns the objects of a kind in namespace (NamespaceAll:
	// in every namespace) whose labels match sel (nil matches all),
	// sorted by namespace and name; none (and no error) for a kind the
	// store holds nothing of.
	List(ctx context.Context, kind, namespace string, sel *LabelSelector) ([]Object, error)
	// Watch sends the changes to objects of a kind ("" for all kinds)
	// until ctx ends, as opts say.
	Watch(ctx context.Context, kind string, opts WatchOptions) (<-chan WatchEvent, error)
	// Revision returns the store's revision: the ResourceVersion of its
	// latest write (0 before the first). A watch that began before the
	// call sends, in time, a change or a WatchBookmark with at least
	// that version.
	Revision(ctx context.Context) (uint64, error)
}

// WatchOptions says where a Store.Watch begins. The zero value begins
// with the changes after the call.
type WatchOptions struct {
	// SendInitial sends the objects stored now first, as WatchAdded
	// events, then a WatchBookmark.
	SendInitial bool
	// Since, when not 0, replays the changes after this ResourceVersion
	// first (ErrExpired if the store no longer holds them). It cannot be
	// combined with SendInitial (ErrInvalid).
	Since uint64
	// Namespace, when not NamespaceAll, limits the watch to the objects
	// of that namespace (cluster-scoped objects are in none: such a
	// watch sees no Namespace objects).
	Namespace string
}

// WatchEventType says what happened to an object.
type WatchEventType string

// Watch event types, as in Kubernetes' watch.EventType.
const (
	WatchAdded    WatchEventType = "Added"    // the object was created (or was there when SendInitial listed it)
	WatchModified WatchEventType = "Modified" // the object's metadata, spec or status changed
	WatchDeleted  WatchEventType = "Deleted"  // the object was deleted
	// WatchBookmark carries no object: every change up to its
	// ResourceVersion has been sent.
	WatchBookmark WatchEventType = "Bookmark"
	// WatchError carries no object: the watch broke (its Err says why)
	// and its channel closes after it. A store whose watches can break
	// (one on a remote server) sends it; its Err matches ErrExpired
	// when the changes after the last event sent are no longer held
	// (etcd compacted them), and the watcher must then list again
	// (WatchOptions.SendInitial); otherwise it can watch again from the
	// last version it saw (WatchOptions.Since). A watch that ends
	// because its context ended sends none.
	WatchError WatchEventType = "Error"
)

// WatchEvent is one change seen by a watch.
type WatchEvent struct {
	// Type is what happened.
	Type WatchEventType
	// Object is a copy of the object; for WatchDeleted its last stored
	// state; nil for WatchBookmark.
	Object Object
	// ResourceVersion is the version the event brings the watch to: the
	// object's ResourceVersion, or a WatchBookmark's version (0 for
	// WatchError).
	ResourceVersion uint64
	// Err is why the watch broke, for WatchError; nil otherwise.
	Err error
}
