// Package etcdstore is an orchestrate.Store on etcd v3, kept as
// Kubernetes' API server keeps its objects there: each object is one key
// (/berth/<kind>/<namespace>/<name>, or /berth/<kind>/<name> for a
// cluster-scoped kind), its ResourceVersion is the key's ModRevision,
// and every write is a transaction: Create puts only if the key does
// not exist (its ModRevision is 0, the compare Kubernetes sends; its
// CreateRevision is 0 then too), Update, UpdateStatus and Delete only
// if its ModRevision is still the one read (else reading it, as
// Kubernetes' GuaranteedUpdate does). A watch is an
// etcd watch of the key prefix from a revision, with the previous value
// of each key (for a deletion's last state); etcd's compaction of that
// revision ends it with a WatchError matching orchestrate.ErrExpired, so
// that the Manager lists again. Revision is the revision of a response's
// header. These are the only etcd calls it makes (range with a prefix,
// a count or a revision; txn comparing ModRevision with a put or a
// delete, else a range; watch of a prefix from a revision with prevKV
// and progress notifications, and progress requests), all of them
// calls Kubernetes makes, in its shapes, so that the store should run
// on kine (SQLite, Postgres, MySQL behind etcd's API) unchanged; it
// has been tested on etcd only.
//
// It meets the whole contract of orchestrate.Store (package storetest
// checks it against a real etcd). The values are the objects' gob
// encoding, not their Kubernetes JSON: that JSON writes durations as
// whole seconds, and a store keeps what it is given.
//
// Package etcdstore is a module of its own
// (github.com/berthlabs/berth/orchestrate/etcdstore): the etcd client
// brings grpc, protobuf and zap, which programs that use berth without
// etcd should not carry in their module graph.
package etcdstore

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/internal/storeutil"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultPrefix is the key prefix of the objects unless WithPrefix says
// otherwise.
const DefaultPrefix = "/berth/"

// DefaultMaxObjectSize is the largest encoded object the store writes
// unless WithMaxObjectSize says otherwise: etcd's default request limit
// (--max-request-bytes, 1.5 MiB) less room for the key and the
// transaction around it.
const DefaultMaxObjectSize = 1536*1024 - 4096

// Option configures a Store made by New or Open.
type Option func(*Store)

// WithPrefix sets the prefix of the store's keys (DefaultPrefix if
// empty); it is made to end with "/". Stores with different prefixes on
// one etcd hold different objects.
func WithPrefix(prefix string) Option {
	return func(s *Store) {
		if prefix == "" {
			prefix = DefaultPrefix
		}
		if !strings.HasSuffix(prefix, "/") {
			prefix += "/"
		}
		s.prefix = prefix
	}
}

// WithMaxObjectSize sets the largest encoded object the store writes;
// a larger one is refused with an error wrapping orchestrate.ErrInvalid
// that gives both sizes, before anything is sent. Set it to what the
// server's --max-request-bytes allows.
func WithMaxObjectSize(n int) Option {
	return func(s *Store) { s.maxSize = n }
}

// Store is an orchestrate.Store on an etcd v3 client. It is safe for
// concurrent use.
type Store struct {
	cli     *clientv3.Client
	owned   bool // Close closes cli
	prefix  string
	maxSize int

	// Revision asks the watches for a progress notification when they
	// have not yet sent what it returned (a write under another prefix
	// moves etcd's revision without an event for this store's watches).
	mu       sync.Mutex
	wanted   uint64
	progress chan struct{} // closed and replaced when wanted grows

	cacheMu sync.Mutex
	cache   map[decodedKey]orchestrate.Object
	latest  map[string]int64 // key → the latest ModRevision in cache
}

var _ orchestrate.Store = (*Store)(nil)

// New returns a Store on cli (which the caller closes after the
// store's last use).
func New(cli *clientv3.Client, opts ...Option) *Store {
	s := &Store{cli: cli, prefix: DefaultPrefix, maxSize: DefaultMaxObjectSize, progress: make(chan struct{}),
		cache: map[decodedKey]orchestrate.Object{}, latest: map[string]int64{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Open connects to the etcd at endpoints ("127.0.0.1:2379", or URLs)
// and returns a Store on it once a read succeeds. While the server does
// not answer it tries again, waiting 100 ms, then twice as long each
// time up to 5 s (no busy loop), until ctx ends; then it fails with an
// error naming the endpoints and the last failure. Close closes the
// connection.
func Open(ctx context.Context, endpoints []string, opts ...Option) (*Store, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("etcdstore: open: no endpoints")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 2 * time.Second,
		// Keepalives notice a dead server within seconds, so that
		// watches break (and are started again) instead of hanging.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcdstore: open %s: %w", strings.Join(endpoints, ","), err)
	}
	s := New(cli, opts...)
	s.owned = true
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = s.Revision(actx)
		cancel()
		if err == nil {
			return s, nil
		}
		if e := probe(endpoints); e != nil {
			err = fmt.Errorf("%w (%w)", err, e)
		}
		select {
		case <-ctx.Done():
			cli.Close()
			return nil, fmt.Errorf("etcdstore: open: etcd at %s did not answer in %d attempts (%w): last: %w",
				strings.Join(endpoints, ","), attempt, ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// probe says why none of endpoints takes a TCP connection (nil if one
// does): the client's own error says only that its call timed out.
func probe(endpoints []string) error {
	var errs []error
	for _, ep := range endpoints {
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		c, err := net.DialTimeout("tcp", host, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Client returns the etcd client the store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close closes the connection Open made; it does nothing for a Store
// made by New.
func (s *Store) Close() error {
	if s.owned {
		return s.cli.Close()
	}
	return nil
}

// kindPrefix returns the prefix of the keys of kind ("" for all kinds)
// in namespace (NamespaceAll: in all).
func (s *Store) kindPrefix(kind, namespace string) string {
	p := s.prefix
	if kind == "" {
		return p
	}
	p += kind + "/"
	if namespace != orchestrate.NamespaceAll && !orchestrate.ClusterScoped(kind) {
		p += namespace + "/"
	}
	return p
}

// key returns the key of an object.
func (s *Store) key(kind, namespace, name string) string {
	if orchestrate.ClusterScoped(kind) {
		return s.prefix + kind + "/" + name
	}
	return s.prefix + kind + "/" + namespace + "/" + name
}

// checkNames refuses names a key cannot hold.
func checkNames(kind, namespace, name string) error {
	for _, part := range []string{kind, namespace, name} {
		if strings.Contains(part, "/") {
			return fmt.Errorf("%s: %q: a kind, namespace or name holds no '/': %w", storeutil.Describe(kind, namespace, name), part, orchestrate.ErrInvalid)
		}
	}
	if kind == "" {
		return fmt.Errorf("an object without a kind: %w", orchestrate.ErrInvalid)
	}
	return nil
}

// checkPrefix refuses a kind or namespace to list or watch that a key
// cannot hold.
func checkPrefix(kind, namespace string) error {
	if strings.Contains(kind, "/") || strings.Contains(namespace, "/") {
		return fmt.Errorf("kind %q, namespace %q: a kind or namespace holds no '/': %w", kind, namespace, orchestrate.ErrInvalid)
	}
	return nil
}

// encode returns obj's stored value: its gob encoding, without the
// ResourceVersion (the key's ModRevision is that).
func (s *Store) encode(obj orchestrate.Object) ([]byte, error) {
	if storeutil.NewObject(obj.Kind()) == nil {
		return nil, fmt.Errorf("%s: a kind the etcd store does not hold: %w", obj.Kind(), orchestrate.ErrInvalid)
	}
	m := obj.Meta()
	rv := m.ResourceVersion
	m.ResourceVersion = 0
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(obj)
	m.ResourceVersion = rv
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", storeutil.Describe(obj.Kind(), m.Namespace, m.Name), err)
	}
	if b.Len() > s.maxSize {
		return nil, fmt.Errorf("%s: %d bytes encoded, over the %d bytes etcd takes in one request: %w",
			storeutil.Describe(obj.Kind(), m.Namespace, m.Name), b.Len(), s.maxSize, orchestrate.ErrInvalid)
	}
	return b.Bytes(), nil
}

// decodeCacheSize bounds the decoded objects the store keeps.
const decodeCacheSize = 4096

// decodedKey identifies a stored value: a key's value at one
// ModRevision never changes.
type decodedKey struct {
	key string
	rev int64
}

// decode returns the object stored as value under key at rev: a copy of
// the one decoded before, if the cache has it (decoding gob afresh
// compiles its types each time, most of a List's cost).
func (s *Store) decode(key string, value []byte, rev int64) (orchestrate.Object, error) {
	dk := decodedKey{key, rev}
	s.cacheMu.Lock()
	cached := s.cache[dk]
	s.cacheMu.Unlock()
	if cached != nil {
		return cached.DeepCopy(), nil
	}
	obj, err := s.decodeValue(key, value, rev)
	if err != nil {
		return nil, err
	}
	s.remember(key, rev, obj)
	return obj, nil
}

// decodeValue decodes a stored value.
func (s *Store) decodeValue(key string, value []byte, rev int64) (orchestrate.Object, error) {
	kind, _, _ := strings.Cut(strings.TrimPrefix(key, s.prefix), "/")
	obj := storeutil.NewObject(kind)
	if obj == nil {
		return nil, fmt.Errorf("etcdstore: key %s: kind %q unknown", key, kind)
	}
	if err := gob.NewDecoder(bytes.NewReader(value)).Decode(obj); err != nil {
		return nil, fmt.Errorf("etcdstore: key %s: decode: %w", key, err)
	}
	obj.Meta().ResourceVersion = uint64(rev)
	return obj, nil
}

// canonical returns obj as it comes back from the store (encoded and
// decoded), so that comparing it with what was read finds no
// difference that is the encoding's (an empty map and none).
func (s *Store) canonical(obj orchestrate.Object, value []byte) (orchestrate.Object, error) {
	c, err := s.decodeValue(s.key(obj.Kind(), obj.Meta().Namespace, obj.Meta().Name), value, int64(obj.Meta().ResourceVersion))
	if err != nil {
		return nil, err
	}
	return c, nil
}

// wrap names what failed and turns etcd's errors into clearer ones.
func wrap(what string, err error) error {
	if errors.Is(err, rpctypes.ErrRequestTooLarge) || status.Code(err) == codes.ResourceExhausted {
		return fmt.Errorf("%s: etcd refused the request as too large (its --max-request-bytes; see WithMaxObjectSize): %w: %w", what, err, orchestrate.ErrInvalid)
	}
	return fmt.Errorf("%s: etcd: %w", what, err)
}

// Create stores a new object: a transaction that puts it only if its
// key does not exist (ModRevision 0).
func (s *Store) Create(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := storeutil.Check(obj); err != nil {
		return nil, err
	}
	stored := storeutil.Created(obj)
	m := stored.Meta()
	if err := checkNames(stored.Kind(), m.Namespace, m.Name); err != nil {
		return nil, err
	}
	what := "create " + storeutil.Describe(stored.Kind(), m.Namespace, m.Name)
	m.UID = storeutil.NewUID()
	m.CreationTime = time.Now()
	value, err := s.encode(stored)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	key := s.key(stored.Kind(), m.Namespace, m.Name)
	// ModRevision 0 is "no such key" (its CreateRevision is 0 too): the
	// compare Kubernetes' create sends, and the one kine recognises.
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return nil, wrap(what, err)
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("%s: %w", what, orchestrate.ErrExists)
	}
	m.ResourceVersion = uint64(resp.Header.Revision)
	c, err := s.canonical(stored, value)
	if err != nil {
		return nil, err
	}
	s.remember(key, resp.Header.Revision, c)
	return c, nil
}

// read returns the stored object under key and its ModRevision (nil if
// there is none).
func (s *Store) read(ctx context.Context, key string) (orchestrate.Object, error) {
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	kv := resp.Kvs[0]
	return s.decode(string(kv.Key), kv.Value, kv.ModRevision)
}

// Update replaces an object's metadata and spec.
func (s *Store) Update(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	return s.update(ctx, "update", obj, storeutil.Updated)
}

// UpdateStatus replaces an object's status.
func (s *Store) UpdateStatus(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if obj != nil && !reflect.ValueOf(obj).IsNil() && !storeutil.HasStatus(obj) {
		m := obj.Meta()
		return nil, fmt.Errorf("update status of %s: the kind has no status: %w", storeutil.Describe(obj.Kind(), storeutil.Namespace(obj), m.Name), orchestrate.ErrInvalid)
	}
	return s.update(ctx, "update status", obj, func(cur, obj orchestrate.Object) (orchestrate.Object, error) {
		next := cur.DeepCopy()
		storeutil.CopyStatus(next, obj)
		return next, nil
	})
}

// update is Kubernetes' GuaranteedUpdate: read, compute the next state,
// write it if the key's ModRevision is still the one read; when it is
// not, read again (an unconditional write is retried, a conditional one
// conflicts unless the object is still at the version it names).
func (s *Store) update(ctx context.Context, op string, obj orchestrate.Object, next func(cur, obj orchestrate.Object) (orchestrate.Object, error)) (orchestrate.Object, error) {
	if err := storeutil.Check(obj); err != nil {
		return nil, err
	}
	kind, ns, name := obj.Kind(), storeutil.Namespace(obj), obj.Meta().Name
	if err := checkNames(kind, ns, name); err != nil {
		return nil, err
	}
	what := op + " " + storeutil.Describe(kind, ns, name)
	key := s.key(kind, ns, name)
	// As Kubernetes' GuaranteedUpdate with a cached state: start from
	// the latest version of the object this store has seen, if any,
	// and read it only when that proves stale (the transaction fails,
	// returning the stored value) or decides the outcome (a conflict or
	// a no-op found against the cache is checked on a fresh read).
	cur, fresh := s.latestOf(key), false
	if cur == nil {
		var err error
		if cur, err = s.read(ctx, key); err != nil {
			return nil, wrap(what, err)
		}
		fresh = true
	}
	reread := func() error {
		var err error
		cur, err = s.read(ctx, key)
		fresh = true
		return err
	}
	for {
		if cur == nil {
			return nil, fmt.Errorf("%s: %w", what, orchestrate.ErrNotFound)
		}
		if err := storeutil.CheckVersion(op, cur, obj.Meta()); err != nil {
			if !fresh {
				if err := reread(); err != nil {
					return nil, wrap(what, err)
				}
				continue
			}
			return nil, err
		}
		n, err := next(cur, obj)
		if err != nil {
			if !fresh {
				if err := reread(); err != nil {
					return nil, wrap(what, err)
				}
				continue
			}
			return nil, err
		}
		value, err := s.encode(n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if n, err = s.canonical(n, value); err != nil {
			return nil, err
		}
		if reflect.DeepEqual(n, cur) {
			if !fresh {
				if err := reread(); err != nil {
					return nil, wrap(what, err)
				}
				continue
			}
			return cur, nil // nothing changed: no write, no event
		}
		rev := int64(cur.Meta().ResourceVersion)
		// Else a read, as Kubernetes' GuaranteedUpdate sends it (kine
		// recognises an update by that shape).
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, string(value))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, wrap(what, err)
		}
		if resp.Succeeded {
			n.Meta().ResourceVersion = uint64(resp.Header.Revision)
			s.remember(key, resp.Header.Revision, n)
			return n, nil
		}
		// Written meanwhile: the Else read holds what is stored now;
		// CheckVersion decides whether the caller's version still holds.
		cur, fresh = nil, true
		if len(resp.Responses) == 1 {
			if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) == 1 {
				if cur, err = s.decode(string(r.Kvs[0].Key), r.Kvs[0].Value, r.Kvs[0].ModRevision); err != nil {
					return nil, err
				}
			}
		}
	}
}

// latestOf returns a copy of the latest version of the object under key
// that the store has seen (read, watched or written), nil if none.
func (s *Store) latestOf(key string) orchestrate.Object {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	rev, ok := s.latest[key]
	if !ok {
		return nil
	}
	if o := s.cache[decodedKey{key, rev}]; o != nil {
		return o.DeepCopy()
	}
	return nil
}

// remember caches obj as the value of key at rev, the latest seen if
// no later one was.
func (s *Store) remember(key string, rev int64, obj orchestrate.Object) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	s.rememberLocked(key, rev, obj)
}

func (s *Store) rememberLocked(key string, rev int64, obj orchestrate.Object) {
	if len(s.cache) >= decodeCacheSize {
		for k := range s.cache { // drop about a quarter, at random
			delete(s.cache, k)
			if s.latest[k.key] == k.rev {
				delete(s.latest, k.key)
			}
			if len(s.cache) < decodeCacheSize*3/4 {
				break
			}
		}
	}
	s.cache[decodedKey{key, rev}] = obj.DeepCopy()
	if rev > s.latest[key] {
		s.latest[key] = rev
	}
}

// forget drops the latest version of key, deleted at rev, unless a
// later one (the key created again) is known.
func (s *Store) forget(key string, rev int64) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.latest[key] <= rev {
		delete(s.latest, key)
	}
}

// Delete removes an object: a transaction that deletes it if its
// ModRevision is still the one read.
func (s *Store) Delete(ctx context.Context, kind, namespace, name string) error {
	ns := orchestrate.NamespaceOf(kind, namespace)
	what := "delete " + storeutil.Describe(kind, ns, name)
	if err := checkNames(kind, ns, name); err != nil {
		return err
	}
	key := s.key(kind, ns, name)
	for {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return wrap(what, err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%s: %w", what, orchestrate.ErrNotFound)
		}
		tx, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(key)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return wrap(what, err)
		}
		if tx.Succeeded {
			s.forget(key, tx.Header.Revision)
			return nil
		}
	}
}

// Get returns an object.
func (s *Store) Get(ctx context.Context, kind, namespace, name string) (orchestrate.Object, error) {
	ns := orchestrate.NamespaceOf(kind, namespace)
	what := "get " + storeutil.Describe(kind, ns, name)
	if err := checkNames(kind, ns, name); err != nil {
		return nil, err
	}
	obj, err := s.read(ctx, s.key(kind, ns, name))
	if err != nil {
		return nil, wrap(what, err)
	}
	if obj == nil {
		return nil, fmt.Errorf("%s: %w", what, orchestrate.ErrNotFound)
	}
	return obj, nil
}

// List returns the objects of a kind in namespace matching sel: one
// range read of their key prefix.
func (s *Store) List(ctx context.Context, kind, namespace string, sel *orchestrate.LabelSelector) ([]orchestrate.Object, error) {
	if err := checkPrefix(kind, namespace); err != nil {
		return nil, err
	}
	if kind == "" {
		return nil, nil // as for a kind the store holds nothing of
	}
	objs, _, err := s.list(ctx, s.kindPrefix(kind, namespace))
	if err != nil {
		return nil, wrap("list "+kind, err)
	}
	out := objs[:0]
	for _, o := range objs {
		if sel.Matches(o.Meta().Labels) {
			out = append(out, o)
		}
	}
	return out, nil
}

// list reads every object under prefix, sorted by kind, namespace and
// name, and the revision read at.
func (s *Store) list(ctx context.Context, prefix string) ([]orchestrate.Object, int64, error) {
	resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	objs := make([]orchestrate.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		o, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			return nil, 0, err
		}
		objs = append(objs, o)
	}
	slices.SortFunc(objs, compareObjects)
	return objs, resp.Header.Revision, nil
}

// compareObjects orders objects by kind, namespace and name (key order
// is not quite that: '-' sorts before '/').
func compareObjects(a, b orchestrate.Object) int {
	if c := strings.Compare(a.Kind(), b.Kind()); c != 0 {
		return c
	}
	if c := strings.Compare(a.Meta().Namespace, b.Meta().Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Meta().Name, b.Meta().Name)
}

// Revision returns etcd's revision, from the header of a count of the
// store's keys.
func (s *Store) Revision(ctx context.Context) (uint64, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap("revision", err)
	}
	rev := uint64(resp.Header.Revision)
	s.mu.Lock()
	if rev > s.wanted {
		s.wanted = rev
		close(s.progress)
		s.progress = make(chan struct{})
	}
	s.mu.Unlock()
	return rev, nil
}

// wantedProgress returns the revision a Revision call returned last and
// a channel closed when another returns more.
func (s *Store) wantedProgress() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wanted, s.progress
}
