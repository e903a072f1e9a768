package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthlabs/berth/orchestrate"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch sends the changes to objects of kind: an etcd watch of their
// key prefix from a revision, with each key's previous value. With
// SendInitial the objects come first from one range read, then a
// bookmark at its revision, and the watch starts after it; with Since
// it starts after that version, and fails with ErrExpired if etcd has
// compacted it. A compaction later, or a lost server, ends the watch
// with a WatchError.
func (s *Store) Watch(ctx context.Context, kind string, opts orchestrate.WatchOptions) (<-chan orchestrate.WatchEvent, error) {
	what := "watch " + kindName(kind)
	if opts.SendInitial && opts.Since != 0 {
		return nil, fmt.Errorf("%s: SendInitial and Since together: %w", what, orchestrate.ErrInvalid)
	}
	if err := checkPrefix(kind, opts.Namespace); err != nil {
		return nil, err
	}
	prefix := s.kindPrefix(kind, opts.Namespace)
	wants := func(obj orchestrate.Object) bool {
		return opts.Namespace == orchestrate.NamespaceAll || obj.Meta().Namespace == opts.Namespace
	}
	var first []orchestrate.WatchEvent
	var from int64 // the watch starts after it
	switch {
	case opts.SendInitial:
		objs, rev, err := s.list(ctx, prefix)
		if err != nil {
			return nil, wrap(what, err)
		}
		for _, o := range objs {
			if wants(o) {
				first = append(first, orchestrate.WatchEvent{Type: orchestrate.WatchAdded, Object: o, ResourceVersion: o.Meta().ResourceVersion})
			}
		}
		first = append(first, orchestrate.WatchEvent{Type: orchestrate.WatchBookmark, ResourceVersion: uint64(rev)})
		from = rev
	case opts.Since != 0:
		from = int64(opts.Since)
		// A read at the watch's first revision fails as the watch would
		// if etcd compacted it, but now, where Watch can say so.
		resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, wrap(what, err)
		}
		if from < resp.Header.Revision {
			_, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(from+1))
			if errors.Is(err, rpctypes.ErrCompacted) {
				return nil, fmt.Errorf("%s from version %d: etcd compacted it (%v): %w", what, opts.Since, err, orchestrate.ErrExpired)
			} else if err != nil {
				return nil, wrap(what, err)
			}
		}
	default:
		resp, err := s.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, wrap(what, err)
		}
		from = resp.Header.Revision
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	out := make(chan orchestrate.WatchEvent)
	go func() {
		defer close(out)
		defer cancel()
		send := func(ev orchestrate.WatchEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for _, ev := range first {
			if !send(ev) {
				return
			}
		}
		sent := uint64(from) // every change up to it has been sent
		asked := false       // a progress request is outstanding
		for {
			wanted, more := s.wantedProgress()
			if wanted > sent && !asked {
				// Revision returned a version this watch has not
				// reached: ask etcd to say how far it is.
				asked = s.cli.RequestProgress(wctx) == nil
			}
			var resp clientv3.WatchResponse
			var ok bool
			select {
			case <-ctx.Done():
				return
			case <-more:
				continue
			case resp, ok = <-wch:
			}
			if ctx.Err() != nil {
				return
			}
			if !ok {
				send(orchestrate.WatchEvent{Type: orchestrate.WatchError, Err: fmt.Errorf("%s: etcd closed the watch", what)})
				return
			}
			if err := resp.Err(); err != nil {
				if resp.CompactRevision != 0 || errors.Is(err, rpctypes.ErrCompacted) {
					err = fmt.Errorf("%s after version %d: etcd compacted it (%v): %w", what, sent, err, orchestrate.ErrExpired)
				} else {
					err = wrap(what, err)
				}
				send(orchestrate.WatchEvent{Type: orchestrate.WatchError, Err: err})
				return
			}
			if resp.IsProgressNotify() {
				asked = false
				if rev := uint64(resp.Header.Revision); rev > sent {
					sent = rev
					if !send(orchestrate.WatchEvent{Type: orchestrate.WatchBookmark, ResourceVersion: rev}) {
						return
					}
				}
				continue
			}
			for _, e := range resp.Events {
				ev, err := s.event(e)
				if err != nil {
					send(orchestrate.WatchEvent{Type: orchestrate.WatchError, Err: fmt.Errorf("%s: %w", what, err)})
					return
				}
				sent = ev.ResourceVersion
				if !wants(ev.Object) {
					continue
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return out, nil
}

// event turns an etcd watch event into a store one: a put is Added
// (the key was created at that revision) or Modified; a delete carries
// the previous value with the deletion's revision.
func (s *Store) event(e *clientv3.Event) (orchestrate.WatchEvent, error) {
	rev := e.Kv.ModRevision
	switch e.Type {
	case mvccpb.DELETE:
		if e.PrevKv == nil {
			return orchestrate.WatchEvent{}, fmt.Errorf("key %s deleted at %d without its previous value", e.Kv.Key, rev)
		}
		// Not through the cache: the previous value at the deletion's
		// revision is no version of the key.
		obj, err := s.decodeValue(string(e.Kv.Key), e.PrevKv.Value, rev)
		if err != nil {
			return orchestrate.WatchEvent{}, err
		}
		s.forget(string(e.Kv.Key), rev)
		return orchestrate.WatchEvent{Type: orchestrate.WatchDeleted, Object: obj, ResourceVersion: uint64(rev)}, nil
	default:
		obj, err := s.decode(string(e.Kv.Key), e.Kv.Value, rev)
		if err != nil {
			return orchestrate.WatchEvent{}, err
		}
		typ := orchestrate.WatchModified
		if e.IsCreate() {
			typ = orchestrate.WatchAdded
		}
		return orchestrate.WatchEvent{Type: typ, Object: obj, ResourceVersion: uint64(rev)}, nil
	}
}

// kindName names a watch's kind in errors.
func kindName(kind string) string {
	if kind == "" {
		return "all kinds"
	}
	return kind
}
